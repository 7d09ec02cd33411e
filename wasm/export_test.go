package wasm

// What the external tests (package wasm_test) read of the package's internals.
const (
	LogBurst = logBurst
	LogRate  = logRate
)

// ResidentCalls is how many calls of m resident instances served (resident.go).
func ResidentCalls(m *Module) int64 {
	if m.res == nil {
		return 0
	}
	return m.res.served.Load()
}

// ResidentsIdle is how many resident instances of m wait for a call.
func ResidentsIdle(m *Module) int {
	if m.res == nil {
		return 0
	}
	return len(m.res.idle)
}

// ResidentsRetired is how many resident instances of m ended after a call (resident.exit).
func ResidentsRetired(m *Module) int64 { return m.res.retired.Load() }

// MaxResidentCalls is how many calls a resident serves before it retires.
const MaxResidentCalls = maxResidentCalls

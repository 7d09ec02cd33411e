// Package metrics exposes module calls on the API server's /metrics, through component-base's
// legacy registry (the one kube-apiserver serves): calls, errors by kind, latency, and pool
// instances, per module and hook.
package metrics

import (
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

const namespace, subsystem = "wasmkube", "module"

// Metrics implements wasm.Observer.
type Metrics struct {
	calls     *metrics.CounterVec
	errors    *metrics.CounterVec
	latency   *metrics.HistogramVec
	instances *metrics.GaugeVec
	idle      *metrics.GaugeVec
}

var _ wasm.Observer = (*Metrics)(nil)

// The registry is process-global (it is the API server's), so the metrics are registered once.
var (
	registerOnce sync.Once
	registered   *Metrics
)

// Registered returns the metrics, registering them with the legacy registry on first use.
func Registered() *Metrics {
	registerOnce.Do(func() {
		registered = newMetrics()
		legacyregistry.MustRegister(registered.calls, registered.errors, registered.latency, registered.instances, registered.idle)
	})
	return registered
}

func newMetrics() *Metrics {
	labels := []string{"module", "hook"}
	return &Metrics{
		calls: metrics.NewCounterVec(&metrics.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "calls_total",
			Help: "Calls of a WebAssembly module's hook export.", StabilityLevel: metrics.ALPHA}, labels),
		errors: metrics.NewCounterVec(&metrics.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "errors_total",
			Help: "Failed calls of a WebAssembly module, by kind (timeout, trap, exit, memory, invalid-json, module-error, …).", StabilityLevel: metrics.ALPHA},
			append(labels, "kind")),
		latency: metrics.NewHistogramVec(&metrics.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: "call_duration_seconds",
			Help: "Duration of WebAssembly module calls, including waiting for a pooled instance.", StabilityLevel: metrics.ALPHA,
			Buckets: metrics.ExponentialBuckets(10e-6, 2.5, 14)}, labels),
		instances: metrics.NewGaugeVec(&metrics.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "pool_instances",
			Help: "Instances in a pooled module's pool.", StabilityLevel: metrics.ALPHA}, []string{"module"}),
		idle: metrics.NewGaugeVec(&metrics.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "pool_idle_instances",
			Help: "Idle instances in a pooled module's pool.", StabilityLevel: metrics.ALPHA}, []string{"module"}),
	}
}

func hook(export string) string {
	if export == envelope.ExportValidate {
		return "admission"
	}
	return export
}

// ObserveCall implements wasm.Observer.
func (m *Metrics) ObserveCall(module, export string, elapsed time.Duration) {
	h := hook(export)
	m.calls.WithLabelValues(module, h).Inc()
	m.latency.WithLabelValues(module, h).Observe(elapsed.Seconds())
}

// ObserveError implements wasm.Observer.
func (m *Metrics) ObserveError(module, export string, kind wasm.ErrorKind) {
	m.errors.WithLabelValues(module, hook(export), string(kind)).Inc()
}

// ObservePool implements wasm.Observer.
func (m *Metrics) ObservePool(module string, size, idle int) {
	if size == 0 {
		m.instances.DeleteLabelValues(module)
		m.idle.DeleteLabelValues(module)
		return
	}
	m.instances.WithLabelValues(module).Set(float64(size))
	m.idle.WithLabelValues(module).Set(float64(idle))
}

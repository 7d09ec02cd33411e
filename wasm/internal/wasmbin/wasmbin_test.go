package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

func sectionBytes(id byte, content ...byte) []byte {
	return append(append([]byte{id}, appendU32(nil, uint32(len(content)))...), content...)
}

// loopModule has no imports and no globals: f() counts a local from 5 down to 0 in a loop.
func loopModule(body ...byte) []byte {
	if body == nil {
		body = []byte{0x01, 0x01, 0x7f, // one i32 local
			0x41, 0x05, 0x21, 0x00, // local.set 0 (5)
			0x03, 0x40, // loop
			0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, // local.tee 0 (local 0 - 1)
			0x0d, 0x00, // br_if 0
			0x0b, 0x0b}
	}
	code := append([]byte{0x01}, appendU32(nil, uint32(len(body)))...)
	code = append(code, body...)
	m := append([]byte(nil), header...)
	m = append(m, sectionBytes(secType, 0x01, 0x60, 0x00, 0x00)...)
	m = append(m, sectionBytes(secFunction, 0x01, 0x00)...)
	m = append(m, sectionBytes(secMemory, 0x01, 0x00, 0x01)...)
	m = append(m, sectionBytes(secExport, 0x01, 0x01, 'f', 0x00, 0x00)...)
	m = append(m, sectionBytes(secCode, code...)...)
	return m
}

func TestLoopChecksRun(t *testing.T) {
	res, err := Rewrite(loopModule(), Options{CheckModule: "host", CheckName: "check", Interval: 2, MaxMemoryPages: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Loops != 1 || res.MinMemoryPages != 1 {
		t.Errorf("loops %d, min pages %d", res.Loops, res.MinMemoryPages)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	checks := 0
	if _, err := rt.NewHostModuleBuilder("host").NewFunctionBuilder().
		WithFunc(func(context.Context, api.Module) { checks++ }).Export("check").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, res.Binary)
	if err != nil {
		t.Fatalf("rewritten module does not instantiate: %v", err)
	}
	if max, ok := mod.Memory().Definition().Max(); !ok || max != 4 {
		t.Errorf("memory max = %d, %v; want 4", max, ok)
	}
	if _, err := mod.ExportedFunction("f").Call(ctx); err != nil {
		t.Fatal(err)
	}
	if checks != 2 { // 5 iterations, a check every 2
		t.Errorf("check called %d times, want 2", checks)
	}
}

func TestCheckCanStopAnEndlessLoop(t *testing.T) {
	endless := []byte{0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // loop br 0 end
	res, err := Rewrite(loopModule(endless...), Options{CheckModule: "host", CheckName: "check", Interval: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	checks := 0
	stop := errors.New("stop")
	_, _ = rt.NewHostModuleBuilder("host").NewFunctionBuilder().
		WithFunc(func(context.Context, api.Module) {
			if checks++; checks == 3 {
				panic(stop)
			}
		}).Export("check").Instantiate(ctx)
	mod, err := rt.Instantiate(ctx, res.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.ExportedFunction("f").Call(ctx); !errors.Is(err, stop) {
		t.Fatalf("endless loop: %v, want the check's error", err)
	}
}

func TestMemoryBelowMinimum(t *testing.T) {
	m := loopModule()
	m = bytes.Replace(m, sectionBytes(secMemory, 0x01, 0x00, 0x01), sectionBytes(secMemory, 0x01, 0x00, 0x08), 1)
	if _, err := Rewrite(m, Options{MaxMemoryPages: 4}); err == nil || !strings.Contains(err.Error(), "needs 8 pages") {
		t.Fatalf("got %v", err)
	}
}

func TestUnsupportedOpcode(t *testing.T) {
	gc := []byte{0x00, 0xfb, 0x00, 0x0b} // a GC-proposal opcode
	if _, err := Rewrite(loopModule(gc...), Options{CheckModule: "h", CheckName: "c", Interval: 1}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
	// Capping memory alone does not walk code and still works.
	if _, err := Rewrite(loopModule(gc...), Options{MaxMemoryPages: 4}); err != nil {
		t.Fatal(err)
	}
}

func TestNotWasm(t *testing.T) {
	if _, err := Rewrite([]byte("\x7fELF"), Options{}); err == nil {
		t.Fatal("accepted an ELF file")
	}
}

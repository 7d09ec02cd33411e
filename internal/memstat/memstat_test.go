package memstat

import (
	"os"
	"runtime"
	"testing"
)

// RSS reads what /proc says, and sees memory the process touches.
func TestRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc")
	}
	before := Settled()
	if before <= 0 {
		t.Fatalf("RSS %d", before)
	}
	peak, stop := Watch()
	defer stop()
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	if grew := peak() - before; grew < 48<<20 {
		t.Errorf("touching 64 MiB grew the peak by %d MiB", grew>>20)
	}
	runtime.KeepAlive(b)
}

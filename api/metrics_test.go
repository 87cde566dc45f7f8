package api

import "testing"

func TestMetricsQuantities(t *testing.T) {
	for _, c := range []struct {
		q    Quantity
		want string
	}{
		{CPUQuantity(250_000_000), "250000000n"},
		{CPUQuantity(-5), "0n"},
		{MemoryQuantity(0), "0"},
		{MemoryQuantity(4096), "4Ki"},
		{MemoryQuantity(1000), "1000"},
	} {
		if string(c.q) != c.want {
			t.Errorf("got %q, want %q", c.q, c.want)
		}
	}
	if m, err := CPUQuantity(250_000_001).MilliCPU(); err != nil || m != 251 {
		t.Errorf("MilliCPU = %d, %v; want 251 (rounded up)", m, err)
	}
	if b, err := MemoryQuantity(8192).Bytes(); err != nil || b != 8192 {
		t.Errorf("Bytes = %d, %v; want 8192", b, err)
	}
}

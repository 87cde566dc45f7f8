package api

import (
	"strings"
	"testing"
)

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"500m", 500, ""},
		{"1", 1000, ""},
		{"0.5", 500, ""},
		{"2", 2000, ""},
		{"0", 0, ""},
		{".25", 250, ""},
		{"1.5", 1500, ""},
		{"+3", 3000, ""},
		{"1e-3", 1, ""},
		{"2e3", 2000000, ""},
		{"100u", 1, ""}, // rounded up to a millicore
		{"1500000n", 2, ""},
		{"0.0001", 1, ""},
		{"1k", 1000000, ""},
		{"", 0, `invalid CPU quantity "": empty`},
		{"-1", 0, "must not be negative"},
		{"half", 0, `invalid CPU quantity "half": not a number; want a number of cores like 2, 0.5 or 500m`},
		{"500 m", 0, `unknown suffix " m"`},
		{"1mm", 0, `unknown suffix "mm"`},
		{"1.2.3", 0, "unknown suffix"},
		{"1e", 0, "unknown suffix"},
		{"1e999", 0, "exponent out of range"},
		{"1E", 0, "too large"}, // exa-cores
		{"10000000000000000", 0, "too large"},
		{strings.Repeat("1", 65), 0, "too long"},
	}
	for _, tt := range tests {
		got, err := ParseCPU(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseCPU(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"128Mi", 128 << 20, ""},
		{"1Gi", 1 << 30, ""},
		{"100M", 100000000, ""},
		{"1e6", 1000000, ""},
		{"1E6", 1000000, ""},
		{"1024", 1024, ""},
		{"1k", 1000, ""},
		{"1Ki", 1024, ""},
		{"1.5Gi", 3 << 29, ""},
		{"2Ti", 2 << 40, ""},
		{"1T", 1000000000000, ""},
		{"1Pi", 1 << 50, ""},
		{"1P", 1000000000000000, ""},
		{"0.5", 1, ""}, // rounded up to a byte
		{"0", 0, ""},
		{"7Ei", 7 << 60, ""},
		{"8Ei", 0, "too large"},
		{"128m", 0, `invalid memory quantity "128m": "m" means 1/1000 of a byte; did you mean "128Mi"?`},
		{"1u", 0, `"u" means 1/1000000 of a byte`},
		{"1GB", 0, `invalid memory quantity "1GB": unknown suffix "GB"`},
		{"1K", 0, `unknown suffix "K"`},
		{"1gi", 0, `unknown suffix "gi"`},
		{"Mi", 0, "not a number"},
		{"-1Mi", 0, "must not be negative"},
		{" 1Mi", 0, "not a number"},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMemory(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

package config_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/config"
)

type spec struct {
	Addr    string        `envconfig:"TEST_ADDR" default:":8080" desc:"listen address"`
	Workers int           `envconfig:"TEST_WORKERS" default:"4"`
	Timeout time.Duration `envconfig:"TEST_TIMEOUT" default:"2s"`
	Project string        `envconfig:"TEST_PROJECT" required:"true"`
}

func TestLoadAppliesDefaultsAndOverrides(t *testing.T) {
	t.Setenv("TEST_PROJECT", "visn-dev")
	t.Setenv("TEST_WORKERS", "16")
	var s spec
	if err := config.Load(&s); err != nil {
		t.Fatal(err)
	}
	if s.Addr != ":8080" || s.Workers != 16 || s.Timeout != 2*time.Second || s.Project != "visn-dev" {
		t.Fatalf("got %+v", s)
	}
}

func TestLoadErrorNamesTheBadVariable(t *testing.T) {
	t.Setenv("TEST_PROJECT", "visn-dev")
	t.Setenv("TEST_WORKERS", "many")
	var s spec
	err := config.Load(&s)
	if err == nil || !strings.Contains(err.Error(), "TEST_WORKERS") {
		t.Fatalf("error %v does not name TEST_WORKERS", err)
	}
}

func TestLoadErrorNamesMissingRequiredVariable(t *testing.T) {
	var s spec
	err := config.Load(&s)
	if err == nil || !strings.Contains(err.Error(), "TEST_PROJECT") {
		t.Fatalf("error %v does not name TEST_PROJECT", err)
	}
}

func TestPrintUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	if err := config.PrintUsage(&buf, &spec{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TEST_ADDR", "TEST_WORKERS", "TEST_TIMEOUT", "TEST_PROJECT", "listen address"} {
		if !strings.Contains(buf.String(), name) {
			t.Errorf("usage lacks %q:\n%s", name, buf.String())
		}
	}
}

package examples

import (
	"path/filepath"
	"testing"

	"github.com/fulcrum-adc/fulcrum/config"
)

// TestExamplesLoad checks that every example is a valid configuration.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 7 {
		t.Fatalf("found %d examples, want at least 7: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			c, err := config.Load(f)
			if err != nil {
				t.Fatalf("%s does not load:\n%v", f, err)
			}
			if len(c.Virtuals) == 0 || len(c.Pools) == 0 {
				t.Errorf("%s: no virtual or no pool", f)
			}
			for _, n := range c.Notices {
				t.Logf("notice: %s", n)
			}
		})
	}
}

// TestDemo checks the embedded demo is the file on disk and what `fulcrum
// demo` promises.
func TestDemo(t *testing.T) {
	c, err := config.Parse(Demo, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vs, ok := c.Virtuals["vs_demo"]
	if !ok || vs.Type != "http" || vs.Destination != "127.0.0.1:8080" || vs.Pool != "demo" || vs.Persistence != "" {
		t.Fatalf("vs_demo = %+v", vs)
	}
	p, ok := c.Pools["demo"]
	if !ok || p.LBMethod != "round-robin" || len(p.Monitors) != 1 || p.Monitors[0] != "http" || len(p.Members) != 2 ||
		p.Members[0].Address != "127.0.0.1:8081" || p.Members[1].Address != "127.0.0.1:8082" {
		t.Fatalf("pool demo = %+v", p)
	}
	if c.Management.Address != config.DefaultManagementAddress {
		t.Errorf("management address = %q", c.Management.Address)
	}
	if len(c.Notices) != 0 {
		t.Errorf("demo has notices: %v", c.Notices)
	}
}

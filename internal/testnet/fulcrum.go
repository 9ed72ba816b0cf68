package testnet

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// BuildFulcrum builds the fulcrum binary into dir and returns its path:
// for labs that run Fulcrum as a process inside their namespaces (its
// sockets must be created there, which one process shared with the test
// cannot guarantee).
func BuildFulcrum(dir string) (string, error) {
	bin := filepath.Join(dir, "fulcrum")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fulcrum-adc/fulcrum/cmd/fulcrum").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building fulcrum: %v\n%s", err, out)
	}
	return bin, nil
}

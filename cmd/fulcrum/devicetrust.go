package main

// `fulcrum device-trust`: the keys of a device group (F5: device trust —
// a certificate authority and one device certificate per BIG-IP).

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

const deviceTrustUsage = `usage: fulcrum device-trust init -dir DIR -device NAME
       fulcrum device-trust add  -dir DIR -device NAME -out OUTDIR
       fulcrum device-trust show -dir DIR [-o json]

Makes the keys that authenticate every HA channel of a device group
(heartbeats carry an HMAC; streams use mutual TLS with device certificates).

  init   on the first device: a new trust domain in DIR (its CA, the
         heartbeat key, and NAME's certificate). DIR is local.trust_dir.
  add    on that device: a certificate for another device, written with
         ca.pem and heartbeat.key (never the CA key) into OUTDIR; copy
         OUTDIR to that device (e.g. scp -rp) and name it in its
         local.trust_dir.
  show   what DIR holds: the CA and device certificates with their expiry and
         fingerprints, and an identifier of the heartbeat key (equal on every
         device of a group).

Every file refuses to be overwritten; keys are written mode 0600. Keep
ca-key.pem offline once every device has its certificate.

Flags:
`

func runDeviceTrust(args []string, stdout, stderr io.Writer) int {
	f := newCmdFlags("device-trust", deviceTrustUsage, stdout, stderr)
	dir := f.String("dir", "", "trust `DIR` (local.trust_dir)")
	device := f.String("device", "", "device `NAME` (as in devices: and local.device)")
	out := f.String("out", "", "add: directory to write the new device's files to")
	format := f.String("o", "table", "show: table or json")
	pos, code, done := f.parse(args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return f.fail("name one action: init, add or show")
	}
	if *dir == "" {
		return f.fail("-dir is required")
	}
	var err error
	switch pos[0] {
	case "init":
		if *device == "" {
			return f.fail("init needs -device NAME (this device)")
		}
		if err = trust.Init(*dir, *device); err == nil {
			fmt.Fprintf(stdout, "trust domain created in %s for device %s\nnext: fulcrum device-trust add -dir %s -device PEER -out PEER-trust, then copy PEER-trust to PEER\n", *dir, *device, *dir)
		}
	case "add":
		if *device == "" || *out == "" {
			return f.fail("add needs -device NAME and -out OUTDIR")
		}
		if err = trust.Issue(*dir, *device, *out); err == nil {
			fmt.Fprintf(stdout, "device %s: %s, %s, %s and %s written to %s\ncopy that directory to %s (keep its modes: scp -rp) and set local.trust_dir to it there\n",
				*device, trust.CAFile, trust.HeartbeatKeyFile, trust.CertFile(*device), trust.KeyFile(*device), *out, *device)
		}
	case "show":
		var in *trust.Info
		if in, err = trust.Inspect(*dir); err == nil {
			printTrust(stdout, in, *format)
		}
	default:
		return f.fail("unknown action %q: init, add or show", pos[0])
	}
	if err != nil {
		fmt.Fprintln(stderr, "fulcrum device-trust:", err)
		return 1
	}
	return 0
}

func printTrust(w io.Writer, in *trust.Info, format string) {
	if format == "json" {
		b, _ := json.MarshalIndent(in, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "trust directory %s\n", in.Dir)
	caKey := "not here (cannot add devices from this directory)"
	if in.HasCAKey {
		caKey = filepath.Join(in.Dir, trust.CAKeyFile) + " (keep it offline once every device has its certificate)"
	}
	fmt.Fprintf(tw, "heartbeat key id %s (must be the same on every device)\nCA key: %s\n\n", in.HeartbeatKey, caKey)
	fmt.Fprintln(tw, "CERTIFICATE\tNAME\tEXPIRES\tSHA-256")
	row := func(kind string, c trust.CertInfo) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", kind, c.Name, c.NotAfter.UTC().Format(time.DateOnly), c.Fingerprint)
	}
	row("CA", in.CA)
	for _, d := range in.Devices {
		row("device", d)
	}
	for _, p := range in.Problems {
		fmt.Fprintln(tw, "problem:", p)
	}
}

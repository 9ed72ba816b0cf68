package main

// `fulcrum show devices|traffic-groups` and `fulcrum failover`: the device
// group of a running Fulcrum through its management API (F5: tmsh show cm
// device, show cm traffic-group, run sys failover).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/configsync"
	"github.com/fulcrum-adc/fulcrum/ha"
	"github.com/fulcrum-adc/fulcrum/mirror"
)

const failoverUsage = `usage: fulcrum failover TRAFFIC_GROUP [-to DEVICE] [flags]

Moves a traffic group off the device that holds it (F5: Force to Standby
for one traffic group), to DEVICE or to the next live device in the group's
ha_order, and waits until the group is active there. It can be run on any
device of the group: a device that does not hold the group asks the one
that does. Without auto_failback the group then stays where it went.

Flags:
`

const syncUsage = `usage: fulcrum sync to-group [-force] [flags]
       fulcrum sync from-device DEVICE [flags]

Config sync of the device group (F5: run cm config-sync to-group |
from-group). to-group sends this device's configuration to its peer; the
peer refuses if it changed its own configuration since the two last
agreed (a conflict), unless -force. from-device takes DEVICE's
configuration here, replacing changes made here. The sections local,
management and log stay each device's own. fulcrum show sync shows who
is ahead, behind or in conflict.

Flags:
`

// runSync implements `fulcrum sync`.
func runSync(args []string, stdout, stderr io.Writer) int {
	c := newAPICLI(stdout, stderr)
	fs := c.newFlagSet("sync", syncUsage)
	f := c.commonFlags(fs, time.Minute)
	force := fs.Bool("force", false, "to-group: overwrite the peer's own changes")
	pos, err := c.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	var req api.SyncRequest
	switch {
	case len(pos) == 1 && pos[0] == "to-group":
		req = api.SyncRequest{ToGroup: true, Force: *force}
	case len(pos) == 2 && pos[0] == "from-device":
		if *force {
			return c.usageError(fs, "-force is for to-group (from-device always replaces this device's changes)")
		}
		req = api.SyncRequest{FromDevice: pos[1]}
	default:
		return c.usageError(fs, "want to-group or from-device DEVICE")
	}
	cl, base, err := c.client(f)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := cl.Sync(ctx, req); err != nil {
		return c.fail(base, err)
	}
	var st configsync.Status
	if err := cl.SyncStatus(ctx, &st); err == nil {
		fmt.Fprintf(c.stdout, "configuration synchronised: generation %d (made on %s)\n", st.Local.Generation, st.Local.Origin)
		return 0
	}
	fmt.Fprintln(c.stdout, "configuration synchronised")
	return 0
}

// showSync prints `fulcrum show sync`.
func (c *apiCLI) showSync(st *configsync.Status, out string) int {
	if out == "json" {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
		return 0
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "config sync (%s): %s\n\n", st.Mode, map[string]string{
		"in-sync":  "in sync",
		"ahead":    "this device has changes its peer lacks (fulcrum sync to-group)",
		"behind":   "the peer has changes this device lacks (fulcrum sync from-device " + st.PeerName + ")",
		"conflict": "CONFLICT: both devices changed since they last agreed; choose: fulcrum sync to-group -force, or fulcrum sync from-device " + st.PeerName,
		"unknown":  "peer not reached: " + st.PeerError,
	}[st.Sync])
	fmt.Fprintln(tw, "DEVICE\tGENERATION\tMADE ON\tLAST AGREED\tCHANGED\tDIGEST")
	row := func(name string, s configsync.State) {
		d := s.Digest
		if len(d) > 12 {
			d = d[:12]
		}
		changed := ""
		if !s.Changed.IsZero() {
			changed = s.Changed.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", name, s.Generation, s.Origin, s.Base, changed, d)
	}
	row(st.Local.Device+" (this device)", st.Local)
	if st.Peer != nil {
		row(st.Peer.Device, *st.Peer)
	} else {
		fmt.Fprintf(tw, "%s\t?\t\t\t\t\n", st.PeerName)
	}
	if st.LastError != "" {
		fmt.Fprintln(tw, "\nlast error:", st.LastError)
	}
	return 0
}

// runFailover implements `fulcrum failover`.
func runFailover(args []string, stdout, stderr io.Writer) int {
	c := newAPICLI(stdout, stderr)
	fs := c.newFlagSet("failover", failoverUsage)
	f := c.commonFlags(fs, 30*time.Second)
	to := fs.String("to", "", "device to move the group to (default: the next live device in ha_order)")
	pos, err := c.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		return c.usageError(fs, "name one traffic group")
	}
	cl, base, err := c.client(f)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := cl.Failover(ctx, pos[0], *to); err != nil {
		return c.fail(base, err)
	}
	var st ha.Status
	if err := cl.HA(ctx, &st); err == nil {
		for _, g := range st.Groups {
			if g.Name == pos[0] {
				fmt.Fprintf(c.stdout, "traffic group %s is active on %s\n", g.Name, g.ActiveOn)
				return 0
			}
		}
	}
	fmt.Fprintf(c.stdout, "traffic group %s moved\n", pos[0])
	return 0
}

// showHA prints `fulcrum show devices` or `fulcrum show traffic-groups`.
func (c *apiCLI) showHA(what string, st *ha.Status, out string) int {
	if out == "json" {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
		return 0
	}
	now := c.now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Millisecond).String() + " ago"
	}
	if what == "devices" {
		fmt.Fprintf(tw, "heartbeat every %s, peer down after %s of silence on every path; floating-address lifetime %s\n",
			st.Interval, st.DeadTime, st.Lifetime)
		if q := st.Quorum; q != nil {
			leader := q.Leader
			if leader == "" {
				leader = "(none)"
			}
			fmt.Fprintf(tw, "quorum (raft): leader %s; this device in touch with the majority: %v\n", leader, q.InMajority)
		}
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "DEVICE\tSTATE\tUP SINCE\tPATH\tLOCAL\tREMOTE\tPATH STATE\tLAST HEARD\tWENT SILENT\tSEND ERRORS")
		for _, d := range st.Devices {
			state := "down"
			if d.Self {
				state = "this device"
			} else if d.Up {
				state = "up"
			}
			up := ""
			if !d.Self && d.Up {
				up = ago(d.UpSince)
			}
			if len(d.Paths) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t\t\t\n", d.Name, state, up)
			}
			for i, p := range d.Paths {
				name, st, u := d.Name, state, up
				if i > 0 {
					name, st, u = "", "", ""
				}
				ps := "silent"
				if p.Up {
					ps = "up"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\n", name, st, u, i, p.Local, p.Remote, ps, ago(p.LastHeard), p.Downs, p.SendErrors)
			}
		}
		r := st.Refused
		if n := r.Malformed + r.Unauthenticated + r.UnknownDevice + r.Replayed + r.WrongSource + r.Overflow; n > 0 {
			fmt.Fprintf(tw, "\nrefused heartbeats: %d malformed, %d bad MAC, %d unknown device, %d replayed, %d wrong source, %d overflow\n",
				r.Malformed, r.Unauthenticated, r.UnknownDevice, r.Replayed, r.WrongSource, r.Overflow)
		}
		return 0
	}
	fmt.Fprintln(tw, "TRAFFIC GROUP\tHERE\tACTIVE ON\tNEXT ACTIVE\tGENERATION\tFAILOVERS\tHA ORDER\tAUTO FAILBACK\tADDRESSES\tLAST CHANGE")
	for _, g := range st.Groups {
		on := g.ActiveOn
		if on == "" {
			on = "(none)"
		}
		change := g.Reason
		if !g.Changed.IsZero() {
			change = ago(g.Changed) + ": " + g.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%v\t%s\t%s\n", g.Name, g.State, on, g.NextActive, g.Generation,
			g.Failovers, strings.Join(g.HAOrder, ","), g.AutoFailback, strings.Join(g.Addresses, "; "), change)
	}
	return 0
}

// showMirroring prints `fulcrum show mirroring`.
func (c *apiCLI) showMirroring(st *mirror.Status, out string) int {
	if out == "json" {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
		return 0
	}
	now := c.now()
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Millisecond).String() + " ago"
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "TRAFFIC GROUP\tROLE\tPEER\tCONNECTED TO\tSENT\tACKED\tLAG\tSNAPSHOTS\tLAST SNAPSHOT\tRECEIVED\tLAST RECEIVED\tREFUSED")
	for _, g := range st.Groups {
		conn := g.Connected
		if conn == "" && g.Role == "sending" {
			conn = "(not connected: " + g.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%d\n", g.Name, g.Role, g.Peer, conn,
			g.Sent, g.Acked, g.Lag, g.Resyncs, ago(g.LastResync), g.Received, ago(g.LastReceived), g.Refused)
	}
	tw.Flush()
	fmt.Fprintln(c.stdout)
	fmt.Fprintln(tw, "TRAFFIC GROUP\tCONNECTIONS MIRRORED NOW\tMIRRORED (TOTAL)\tLOST\tBYTES MIRRORED\tRESUMABLE HERE NOW\tRECEIVED\tDROPPED\tTAKEN OVER")
	for _, g := range st.Groups {
		cs := g.Connections
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", g.Name, cs.Open, cs.Mirrored, cs.Lost, cs.Bytes, cs.Shadows, cs.Received, cs.Dropped, cs.Restored)
	}
	return 0
}

package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fulcrum-adc/fulcrum/engine"
	"github.com/fulcrum-adc/fulcrum/isession"
)

// showISessions prints `fulcrum show isessions`: every tunnel connection,
// remote end (by profile) and data-center end (the listener).
func (c *apiCLI) showISessions(st *engine.ISessionStats, out string) int {
	if out == "json" {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
		return 0
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "END\tPROFILE/LISTENER\tPEER\tREMOTE\tAGE\tSTREAMS OPEN\tSTREAMS TOTAL\tRAW OUT\tWIRE OUT\tRATIO OUT\tRAW IN\tWIRE IN\tDEDUP HITS OUT\tCACHE\tRTT\tRATE\tNEGOTIATED")
	row := func(end, name string, t isession.Stats) {
		ratio := "-"
		if t.Mux.RawOut > 0 {
			ratio = fmt.Sprintf("%.2f", float64(t.Mux.WireOut)/float64(t.Mux.RawOut))
		}
		hits := "-"
		if t.DedupOut.Chunks > 0 {
			hits = fmt.Sprintf("%d/%d", t.DedupOut.Refs, t.DedupOut.Chunks)
		}
		cache := "-"
		if t.DedupIn.CacheBytes > 0 || t.DedupOut.CacheEntries > 0 {
			cache = fmt.Sprintf("%d MiB", t.DedupIn.CacheBytes>>20)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%.1f Mbit/s\t%s\n",
			end, name, t.Peer, t.Remote, t.Age.Round(time.Second), t.Mux.StreamsOpen, t.Mux.StreamsOpened+t.Mux.StreamsAccepted,
			t.Mux.RawOut, t.Mux.WireOut, ratio, t.Mux.RawIn, t.Mux.WireIn, hits, cache, t.TCPRTT.Round(100*time.Microsecond),
			float64(t.DeliveryRate)*8/1e6, t.Outcome)
	}
	names := make([]string, 0, len(st.Pools))
	for n := range st.Pools {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, t := range st.Pools[n].Tunnels {
			row("remote", n, t)
		}
	}
	if l := st.Listener; l != nil {
		for _, t := range l.Tunnels {
			row("data-center", "listener", t)
		}
	}
	tw.Flush()
	var notes []string
	for _, n := range names {
		p := st.Pools[n]
		notes = append(notes, fmt.Sprintf("profile %s: %d tunnel setups, %d failed", n, p.Dials, p.DialFailures))
	}
	if l := st.Listener; l != nil {
		notes = append(notes, fmt.Sprintf("listener: %d tunnels accepted, %d refused; %d streams, %d without a target, %d whose target failed",
			l.Accepted, l.Refused, l.Streams, l.NoTarget, l.TargetFailed))
	}
	if len(notes) == 0 {
		notes = []string{"no iSession profile in use and no listener"}
	}
	fmt.Fprintln(c.stdout, "\n"+strings.Join(notes, "\n"))
	return 0
}

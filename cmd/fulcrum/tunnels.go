package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/fulcrum-adc/fulcrum/engine"
)

// showTunnels prints `fulcrum show tunnels`: each EtherIP tunnel, its
// counters and its drops by reason.
func (c *apiCLI) showTunnels(ts []engine.TunnelStats, out string) int {
	if out == "json" {
		b, _ := json.MarshalIndent(ts, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
		return 0
	}
	if len(ts) == 0 {
		fmt.Fprintln(c.stdout, "no tunnels")
		return 0
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL\tTYPE\tINTERFACE\tVLAN GROUP\tLOCAL\tREMOTE\tMTU\tSTATE\tPACKETS IN\tBYTES IN\tPACKETS OUT\tBYTES OUT\tDROPS")
	for _, t := range ts {
		var drops []string
		for r, n := range t.Drops {
			if n > 0 {
				drops = append(drops, fmt.Sprintf("%s %d", r, n))
			}
		}
		if t.ForeignSource > 0 {
			drops = append(drops, fmt.Sprintf("foreign_source %d (all tunnels of %s)", t.ForeignSource, t.Local))
		}
		slices.Sort(drops)
		d := "none"
		if len(drops) > 0 {
			d = strings.Join(drops, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\t%s\n", t.Name, t.Type, t.Interface, orDash(t.Group),
			t.Local, t.Remote, t.MTU, t.State, t.RxPackets, humanBytes(t.RxBytes), t.TxPackets, humanBytes(t.TxBytes), d)
	}
	tw.Flush()
	return 0
}

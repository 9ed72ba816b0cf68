package etherip

import (
	"errors"
	"fmt"
	"net/netip"
)

// CheckConfigs reports tunnel configurations that obviously loop, as one
// error listing every problem (nil if there is none). It looks only at
// addresses, so it is a pure function to call before creating endpoints
// (for example when validating a configuration file):
//
//   - a tunnel whose remote is its own local address (its packets come
//     straight back to it);
//   - two tunnels with the same (local, remote) pair: a second tunnel
//     between the same bridges is a parallel L2 path and, without STP, a
//     broadcast storm (the Mux would also refuse the second one);
//   - two tunnels that are each other's mirror (A→B and B→A on one
//     host): both ends on one host bridge frames back to themselves.
//
// It does not know which bridge each TAP joins, so it cannot find loops
// through other L2 paths; EtherIP itself has no loop protection (RFC 3378).
func CheckConfigs(cfgs []Config) error {
	type pair struct{ local, remote netip.Addr }
	seen := make(map[pair]int, len(cfgs))
	var errs []error
	name := func(i int) string {
		if cfgs[i].Name != "" {
			return fmt.Sprintf("tunnel %d (%s)", i, cfgs[i].Name)
		}
		return fmt.Sprintf("tunnel %d", i)
	}
	for i, c := range cfgs {
		l, r := c.Local.Unmap().WithZone(""), c.Remote.Unmap().WithZone("")
		if l.IsValid() && l == r {
			errs = append(errs, fmt.Errorf("etherip: %s: remote %s is its own local address: loop", name(i), r))
			continue
		}
		p := pair{l, r}
		if j, ok := seen[p]; ok {
			errs = append(errs, fmt.Errorf("etherip: %s and %s both join local %s to remote %s: parallel tunnels between the same ends loop without STP", name(j), name(i), l, r))
			continue
		}
		if j, ok := seen[pair{r, l}]; ok {
			errs = append(errs, fmt.Errorf("etherip: %s (%s→%s) and %s (%s→%s) are mirrors: both ends on one host loop frames back to it", name(j), r, l, name(i), l, r))
			continue
		}
		seen[p] = i
	}
	return errors.Join(errs...)
}

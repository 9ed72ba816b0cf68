package main

// This file holds the commands that talk to a running Fulcrum through its
// management API: `fulcrum show ...`, `fulcrum member ...` and
// `fulcrum reload`. They are thin: flags → api.Client → a table for a
// person (like tmsh) or JSON for a script.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/configsync"
	"github.com/fulcrum-adc/fulcrum/engine"
	"github.com/fulcrum-adc/fulcrum/ha"
	"github.com/fulcrum-adc/fulcrum/mirror"
)

// runShow implements `fulcrum show virtuals|pools|connections|persistence`.
func runShow(args []string, stdout, stderr io.Writer) int {
	return newAPICLI(stdout, stderr).show(args)
}

// runMember implements `fulcrum member POOL ADDR enable|disable|force-offline`.
func runMember(args []string, stdout, stderr io.Writer) int {
	return newAPICLI(stdout, stderr).member(args)
}

// runReload implements `fulcrum reload`.
func runReload(args []string, stdout, stderr io.Writer) int {
	return newAPICLI(stdout, stderr).reload(args)
}

// apiCLI carries what the commands read from their environment, so tests
// can replace it.
type apiCLI struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
}

func newAPICLI(stdout, stderr io.Writer) *apiCLI {
	return &apiCLI{stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
}

const showUsage = `usage: fulcrum show virtuals [NAME] [flags]
       fulcrum show pools [NAME] [flags]
       fulcrum show connections [-virtual V] [-pool P] [-member ADDR] [-client IP] [-limit N] [flags]
       fulcrum show connections ID [flags]     (one connection: TCP profile, socket options, TCP_INFO)
       fulcrum show persistence [-virtual V] [-pool P] [-profile NAME] [-member ADDR] [-limit N] [flags]
       fulcrum show config [flags]             (the running configuration as applied, secrets redacted)
       fulcrum show devices [flags]            (the device group: peers, HA paths, last heartbeat per path)
       fulcrum show traffic-groups [flags]     (where each traffic group is active, next active, generation)
       fulcrum show mirroring [flags]          (persistence mirroring per traffic group: peer, lag, snapshots)
       fulcrum show sync [flags]               (config sync: generations, who is ahead, behind or in conflict)
       fulcrum show isessions [flags]          (iSession tunnels at both ends: peer, negotiated, bytes, dedup, RTT)
       fulcrum show tunnels [flags]            (EtherIP tunnels: state, packets and bytes each way, drops by reason, MTU)

Shows the state of a running Fulcrum (F5: tmsh show ltm virtual|pool,
show sys connection, show ltm persistence persist-records). Flags may come
before or after the arguments; -c FILE takes the API address and token from
the configuration file.

Flags:
`

const memberUsage = `usage: fulcrum member POOL ADDR enable|disable|force-offline [flags]

Changes a pool member's state on a running Fulcrum:
  enable         take new connections again
  disable        no new connections; active and persistent ones continue
                 (F5 session user-disabled)
  force-offline  only active connections continue (F5 user-down)
ADDR is the member's address as configured, e.g. 10.0.0.5:80 or [2001:db8::5]:80.
The state survives a restart (kept in the state file beside the
configuration). Flags may come before or after the arguments; -c FILE takes
the API address and token from the configuration file.

Flags:
`

const reloadUsage = `usage: fulcrum reload [flags]

Asks a running Fulcrum to re-read its configuration file (like SIGHUP). An
invalid file is rejected with every problem listed and the running
configuration stays in force. -c FILE takes the API address and token from
the configuration file.

Flags:
`

// apiFlags are the flags every API command has.
type apiFlags struct {
	api, token, config string
	timeout            time.Duration
}

func (c *apiCLI) commonFlags(fs *flag.FlagSet, timeout time.Duration) *apiFlags {
	f := &apiFlags{}
	// The defaults (config file, environment) are applied in client(), not
	// here: -c must beat FULCRUM_API, and -h must never print a secret.
	fs.StringVar(&f.api, "api", "", "management API address, URL or host:port\n(default: from -c FILE, else env FULCRUM_API, else "+api.DefaultBase+")")
	fs.StringVar(&f.token, "token", "", "API bearer token (default: from -c FILE, else env FULCRUM_TOKEN)")
	fs.StringVar(&f.config, "c", "", "take the management address and token from this configuration file\n(management.address, management.token or token_file)")
	fs.DurationVar(&f.timeout, "timeout", timeout, "give up after this long")
	return f
}

// splitNoun finds the command's noun ("pools" in `show -o json pools web`)
// so flags may come before it as well as after: it skips flags and, for a
// flag written without "=", its value (every flag of these commands but -h
// takes one).
func splitNoun(args []string) (noun string, rest []string, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return args[i+1], append(slices.Clone(args[:i]), args[i+2:]...), true
			}
			return "", args, false
		case a == "-h" || a == "-help" || a == "--help":
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if !strings.Contains(a, "=") {
				i++ // its value
			}
		default:
			return a, append(slices.Clone(args[:i]), args[i+1:]...), true
		}
	}
	return "", args, false
}

// managementFromFile reads the management section of a configuration file:
// the API base URL and the token (management.token, or the file named by
// management.token_file, relative to the configuration's directory). It
// reads nothing else, so a file with problems elsewhere, or certificates
// this user cannot read, still tells the CLI where the API is.
func managementFromFile(path string) (base, token string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var doc struct {
		Management struct {
			Address   string `yaml:"address"`
			Token     string `yaml:"token"`
			TokenFile string `yaml:"token_file"`
		} `yaml:"management"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", "", fmt.Errorf("%s: %v", path, err)
	}
	m := doc.Management
	addr := m.Address
	switch addr {
	case "":
		addr = config.DefaultManagementAddress
	case config.ManagementOff:
		return "", "", fmt.Errorf("%s: management.address is off: this configuration runs no management API", path)
	}
	ap, err := config.ParseManagementAddress(addr)
	if err != nil {
		return "", "", fmt.Errorf("%s: management.address: %v", path, err)
	}
	// A listener on every address is reached on loopback.
	if ip := ap.Addr(); ip.IsUnspecified() {
		if ip.Is6() && !strings.HasPrefix(addr, ":") {
			ap = netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
		} else {
			ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
		}
	}
	token = strings.TrimSpace(m.Token)
	if m.TokenFile != "" {
		tf := m.TokenFile
		if !filepath.IsAbs(tf) {
			tf = filepath.Join(filepath.Dir(path), tf)
		}
		b, err := os.ReadFile(tf)
		if err != nil {
			return "", "", fmt.Errorf("%s: management.token_file: %v", path, err)
		}
		token = strings.TrimSpace(string(b))
	}
	return "http://" + ap.String(), token, nil
}

func (c *apiCLI) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args with parseInterleaved; help that was asked for (-h)
// goes to stdout like every other command's, a usage error to stderr.
func (c *apiCLI) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(c.stdout)
		}
	}
	return parseInterleaved(fs, args)
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("show pools web -o json" and "show pools -o json
// web" both work), which Go's flag package alone does not allow.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// client builds the API client from the common flags. Each setting comes
// from the first of: its flag, the -c configuration file, the environment,
// the default.
func (c *apiCLI) client(f *apiFlags) (*api.Client, string, error) {
	addr, token := f.api, f.token
	if f.config != "" {
		fileBase, fileToken, err := managementFromFile(f.config)
		if err != nil {
			return nil, "", fmt.Errorf("-c: %w", err)
		}
		if addr == "" {
			addr = fileBase
		}
		if token == "" {
			token = fileToken
		}
	}
	if addr == "" {
		addr = c.getenv("FULCRUM_API")
	}
	if token == "" {
		token = c.getenv("FULCRUM_TOKEN")
	}
	base, err := api.NormalizeBase(addr)
	if err != nil {
		return nil, addr, err
	}
	return &api.Client{Base: base, Token: token, HTTP: &http.Client{}}, base, nil
}

// fail prints err the way an operator needs to read it and returns exit
// status 1.
func (c *apiCLI) fail(base string, err error) int {
	var msg string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = fmt.Sprintf("cannot reach the Fulcrum API at %s: is `fulcrum run` running? (-c FILE takes the address from its configuration)", base)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("the Fulcrum API at %s did not answer in time (raise -timeout?)", base)
	case api.IsUnreachable(err):
		msg = fmt.Sprintf("cannot reach the Fulcrum API at %s: %v", base, err)
	case errors.Is(err, api.ErrUnauthorized):
		msg = fmt.Sprintf("the Fulcrum API at %s refused the request: %v (set -token or FULCRUM_TOKEN)", base, err)
	default:
		msg = err.Error()
	}
	fmt.Fprintln(c.stderr, "fulcrum: "+msg)
	return 1
}

// usageError prints a one-line problem and the command's usage; exit 2.
func (c *apiCLI) usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(c.stderr, "fulcrum: "+format+"\n", a...)
	fs.Usage()
	return 2
}

func (c *apiCLI) show(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fs := c.newFlagSet("show", showUsage)
		c.commonFlags(fs, 10*time.Second)
		fs.String("o", "table", "output: table or json")
		if len(args) == 0 {
			return c.usageError(fs, "show what? virtuals, pools, connections, persistence or config")
		}
		fs.SetOutput(c.stdout)
		fs.Usage()
		return 0
	}
	what, args, ok := splitNoun(args)
	if !ok {
		fs := c.newFlagSet("show", showUsage)
		c.commonFlags(fs, 10*time.Second)
		fs.String("o", "table", "output: table or json")
		if _, err := c.parse(fs, args); errors.Is(err, flag.ErrHelp) {
			return 0
		} else if err != nil {
			return 2
		}
		return c.usageError(fs, "show what? virtuals, pools, connections, persistence or config")
	}
	fs := c.newFlagSet("show "+what, showUsage)
	f := c.commonFlags(fs, 10*time.Second)
	out := fs.String("o", "table", "output: table or json")
	var cq api.ConnQuery
	var pq api.PersistQuery
	switch what {
	case "virtuals", "virtual", "vs":
		what = "virtuals"
	case "pools", "pool":
		what = "pools"
	case "connections", "connection", "conns":
		what = "connections"
		fs.StringVar(&cq.Virtual, "virtual", "", "only connections of this virtual server")
		fs.StringVar(&cq.Pool, "pool", "", "only connections to this pool")
		fs.StringVar(&cq.Member, "member", "", "only connections to this member (IP:PORT)")
		fs.StringVar(&cq.Client, "client", "", "only connections from this client (IP or IP:PORT)")
		fs.IntVar(&cq.Limit, "limit", 0, fmt.Sprintf("at most this many (0 = %d)", api.DefaultLimit))
	case "persistence", "persist":
		what = "persistence"
		fs.StringVar(&pq.Virtual, "virtual", "", "only records of this virtual server")
		fs.StringVar(&pq.Pool, "pool", "", "only records pointing into this pool")
		fs.StringVar(&pq.Profile, "profile", "", "only records of this persistence profile")
		fs.StringVar(&pq.Member, "member", "", "only records pointing to this member (IP:PORT)")
		fs.IntVar(&pq.Limit, "limit", 0, fmt.Sprintf("at most this many (0 = %d)", api.DefaultLimit))
	case "config", "configuration":
		what = "config"
	case "devices", "device":
		what = "devices"
	case "traffic-groups", "traffic-group", "traffic_groups", "tg":
		what = "traffic-groups"
	case "mirroring", "mirror":
		what = "mirroring"
	case "sync", "config-sync":
		what = "sync"
	case "isessions", "isession":
		what = "isessions"
	case "tunnels", "tunnel":
		what = "tunnels"
	default:
		return c.usageError(fs, "cannot show %q: want virtuals, pools, connections, persistence, config, devices, traffic-groups, mirroring, sync, isessions or tunnels", what)
	}
	pos, err := c.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag package has printed the problem and the usage
	}
	if *out != "table" && *out != "json" {
		return c.usageError(fs, "-o %q: want table or json", *out)
	}
	var name string
	switch {
	case len(pos) == 1 && (what == "virtuals" || what == "pools" || what == "connections"):
		name = pos[0]
	case len(pos) > 0:
		return c.usageError(fs, "unexpected argument %q", pos[0])
	}
	if cq.Limit < 0 || pq.Limit < 0 {
		return c.usageError(fs, "-limit must not be negative")
	}
	cl, base, err := c.client(f)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()

	var data any
	switch what {
	case "virtuals":
		if name != "" {
			var v api.VirtualStatus
			v, err = cl.Virtual(ctx, name)
			data = v
		} else {
			data, err = cl.Virtuals(ctx)
		}
	case "pools":
		if name != "" {
			var p api.PoolStatus
			p, err = cl.Pool(ctx, name)
			data = p
		} else {
			data, err = cl.Pools(ctx)
		}
	case "connections":
		if name != "" {
			id, perr := strconv.ParseUint(name, 10, 64)
			if perr != nil {
				return c.usageError(fs, "connection id %q is not a number", name)
			}
			data, err = cl.Connection(ctx, id)
		} else {
			data, err = cl.Connections(ctx, cq)
		}
	case "persistence":
		data, err = cl.Persistence(ctx, pq)
	case "devices", "traffic-groups":
		var st ha.Status
		if err = cl.HA(ctx, &st); err == nil {
			return c.showHA(what, &st, *out)
		}
	case "sync":
		var st configsync.Status
		if err = cl.SyncStatus(ctx, &st); err == nil {
			return c.showSync(&st, *out)
		}
	case "mirroring":
		var st mirror.Status
		if err = cl.Mirroring(ctx, &st); err == nil {
			return c.showMirroring(&st, *out)
		}
	case "isessions":
		var st engine.ISessionStats
		if err = cl.ISessions(ctx, &st); err == nil {
			return c.showISessions(&st, *out)
		}
	case "tunnels":
		var ts []engine.TunnelStats
		if err = cl.Tunnels(ctx, &ts); err == nil {
			return c.showTunnels(ts, *out)
		}
	case "config":
		// YAML as applied, secrets redacted: the same whatever -o says.
		var y []byte
		if y, err = cl.RunningConfig(ctx); err == nil {
			c.stdout.Write(y)
			return 0
		}
	}
	if err != nil {
		return c.fail(base, err)
	}

	if *out == "json" {
		b, err := json.MarshalIndent(data, "", "  ")
		if err != nil {
			return c.fail(base, err)
		}
		c.stdout.Write(append(b, '\n'))
		return 0
	}
	switch d := data.(type) {
	case api.VirtualStatus:
		printVirtuals(c.stdout, []api.VirtualStatus{d})
	case []api.VirtualStatus:
		printVirtuals(c.stdout, d)
	case api.PoolStatus:
		printPools(c.stdout, []api.PoolStatus{d})
	case []api.PoolStatus:
		printPools(c.stdout, d)
	case []api.ConnectionStatus:
		printConnections(c.stdout, d, effectiveLimit(cq.Limit))
	case api.ConnectionDetail:
		printConnectionDetail(c.stdout, d)
	case []api.PersistenceRecord:
		printPersistence(c.stdout, d, effectiveLimit(pq.Limit), c.now())
	}
	return 0
}

func effectiveLimit(n int) int {
	if n == 0 {
		return api.DefaultLimit
	}
	return n
}

func printVirtuals(w io.Writer, vs []api.VirtualStatus) {
	if len(vs) == 0 {
		fmt.Fprintln(w, "no virtual servers")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDESTINATION\tTYPE\tPOOL\tPERSISTENCE\tAVAILABILITY\tSTATE\tACTIVE\tTOTAL\tREQUESTS\tBYTES IN\tBYTES OUT\tERRORS\tCLIENT ERRORS\tREJECTED")
	for _, v := range vs {
		typ := v.Type
		if v.TLS {
			typ += "+tls"
		}
		state := "enabled"
		if !v.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\n",
			v.Name, v.Destination, orDash(typ), orDash(v.Pool), orDash(v.Persistence), orDash(v.Availability), state,
			v.Active, v.Total, v.Requests, humanBytes(v.BytesIn), humanBytes(v.BytesOut), v.Errors, v.ClientErrors, v.Rejected)
	}
	tw.Flush()
	for _, v := range vs {
		if d := v.DSR; d != nil {
			var drops []string
			for _, r := range slices.Sorted(maps.Keys(d.Drops)) {
				if d.Drops[r] > 0 {
					drops = append(drops, fmt.Sprintf("%s %d", r, d.Drops[r]))
				}
			}
			fmt.Fprintf(w, "%s dsr: packets %d, forwarded %d, flows %d (%d new); drops: %s\n",
				v.Name, d.Packets, d.Forwarded, d.Flows, d.NewFlows, orDash(strings.Join(drops, ", ")))
		}
		if l := v.LBSP; l != nil {
			fmt.Fprintf(w, "%s lbsp: by server option %d, by client identity %d, balanced %d, no option %d; ignored: not a member %d, malformed %d, unreadable %d\n",
				v.Name, l.ByServer, l.ByIdentity, l.Balanced, l.NoOption, l.IgnoredNotMember, l.Malformed, l.Unreadable)
		}
	}
}

// printPools prints one block per pool: a summary line, then its members
// indented, like `tmsh show ltm pool P members`.
func printPools(w io.Writer, ps []api.PoolStatus) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no pools")
		return
	}
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "pool %s  %s  method %s  members %d/%d available  connections %d active, %d total  requests %d  bytes in %s, out %s\n",
			p.Name, orDash(p.Availability), orDash(p.Method), p.Available, p.Total, p.Active, p.TotalConns, p.Requests,
			humanBytes(p.BytesIn), humanBytes(p.BytesOut))
		if len(p.Members) == 0 {
			fmt.Fprintln(w, "  (no members)")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		located := false // a virtual_location monitor placed some member
		for _, m := range p.Members {
			located = located || (m.Location != "" && m.Location != "unknown")
		}
		if located {
			fmt.Fprintln(tw, "  MEMBER\tLOCATION\tAVAILABILITY\tSTATE\tHEALTH\tACTIVE\tTOTAL\tREQUESTS\tBYTES IN\tBYTES OUT\tREASON")
		} else {
			fmt.Fprintln(tw, "  MEMBER\tAVAILABILITY\tSTATE\tHEALTH\tACTIVE\tTOTAL\tREQUESTS\tBYTES IN\tBYTES OUT\tREASON")
		}
		for _, m := range p.Members {
			health := orDash(m.Health)
			if m.SlowRampPercent > 0 && m.SlowRampPercent < 100 {
				health += fmt.Sprintf(" (ramp %d%%)", m.SlowRampPercent)
			}
			active := strconv.FormatInt(m.Active, 10)
			if m.ConnLimit > 0 {
				active += "/" + strconv.Itoa(m.ConnLimit)
			}
			addr := m.Address
			if located {
				loc := orDash(m.Location)
				if m.LocationReason != "" {
					loc += " (" + m.LocationReason + ")"
				}
				addr += "\t" + loc
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n",
				addr, orDash(m.Availability), orDash(m.State), health, active, m.Total, m.Requests,
				humanBytes(m.BytesIn), humanBytes(m.BytesOut), oneLine(m.Reason))
		}
		tw.Flush()
	}
}

func printConnections(w io.Writer, cs []api.ConnectionStatus, limit int) {
	if len(cs) == 0 {
		fmt.Fprintln(w, "no connections")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVIRTUAL\tPROTO\tCLIENT -> VIRTUAL ADDR\tSERVER LOCAL -> SERVER\tAGE\tIDLE\tBYTES IN\tBYTES OUT")
	for _, cn := range cs {
		server := orDash(cn.ServerLocal) + " -> " + orDash(cn.Server)
		if cn.Server == "" {
			server = "(not connected)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s -> %s\t%s\t%s\t%s\t%s\t%s\n",
			cn.ID, cn.Virtual, orDash(cn.Proto), orDash(cn.Client), orDash(cn.VirtualAddr), server,
			humanSeconds(cn.AgeSeconds), humanSeconds(cn.IdleSeconds), humanBytes(cn.BytesIn), humanBytes(cn.BytesOut))
	}
	tw.Flush()
	fmt.Fprintln(w, countLine(len(cs), limit, "connection"))
}

func printPersistence(w io.Writer, rs []api.PersistenceRecord, limit int, now time.Time) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no persistence records")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// KEY last: it can be long, and it is what `fulcrum delete persistence`
	// takes, quoted for the shell so that it can be pasted.
	fmt.Fprintln(tw, "TYPE\tVALUE\tPROFILE\tVIRTUAL\tPOOL\tMEMBER\tAGE\tEXPIRES IN\tKEY")
	for _, r := range rs {
		value := r.Value
		if value == "" {
			value = r.Key
		}
		age, expires := "-", "-"
		if !r.Created.IsZero() {
			age = humanSeconds(now.Sub(r.Created).Seconds())
		}
		if !r.Expires.IsZero() {
			if left := r.Expires.Sub(now); left > 0 {
				expires = humanSeconds(left.Seconds())
			} else {
				expires = "expired"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			orDash(r.Type), orDash(oneLine(value)), orDash(r.Profile), orDash(r.Virtual), orDash(r.Pool), orDash(r.Member), age, expires,
			shellQuote(r.Key))
	}
	tw.Flush()
	fmt.Fprintln(w, countLine(len(rs), limit, "record"))
}

// shellQuote renders a persistence key so that pasting it into a shell
// passes it unchanged. Keys hold client-chosen text (a header or cookie
// value), so double quotes, where the shell would still expand $(...) or
// backquotes, are not safe; single quotes are, an embedded quote being
// closed, escaped and reopened. A
// key with unprintable characters cannot be pasted at all and is not shown:
// delete such records by filter, or through the API with the key from
// -o json.
func shellQuote(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "(unprintable: see -o json)"
		}
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// countLine says how many rows were shown and warns when the limit may have
// hidden more, so an operator does not take a truncated table for the truth.
func countLine(n, limit int, noun string) string {
	s := fmt.Sprintf("%d %s", n, noun)
	if n != 1 {
		s += "s"
	}
	if n >= limit {
		s += fmt.Sprintf(" (limit %d reached: there may be more; raise -limit or narrow with filters)", limit)
	}
	return s
}

func (c *apiCLI) member(args []string) int {
	fs := c.newFlagSet("member", memberUsage)
	f := c.commonFlags(fs, 10*time.Second)
	pos, err := c.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 3 {
		return c.usageError(fs, "want POOL ADDR and one of enable, disable, force-offline")
	}
	pool, addr := pos[0], pos[1]
	state, ok := api.NormalizeState(pos[2])
	if !ok {
		return c.usageError(fs, "%q: want enable, disable or force-offline", pos[2])
	}
	cl, base, err := c.client(f)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := cl.SetMemberState(ctx, pool, addr, state); err != nil {
		return c.fail(base, err)
	}
	m, err := cl.Member(ctx, pool, addr)
	if err != nil {
		// The change was made; only the confirmation read failed.
		fmt.Fprintf(c.stdout, "pool %s member %s: %s\n", pool, addr, state)
		return 0
	}
	fmt.Fprintf(c.stdout, "pool %s member %s: %s (availability %s, health %s, %d active connections)\n",
		pool, m.Address, m.State, orDash(m.Availability), orDash(m.Health), m.Active)
	return 0
}

func (c *apiCLI) reload(args []string) int {
	fs := c.newFlagSet("reload", reloadUsage)
	f := c.commonFlags(fs, 60*time.Second)
	pos, err := c.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		return c.usageError(fs, "unexpected argument %q", pos[0])
	}
	cl, base, err := c.client(f)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := cl.Reload(ctx); err != nil {
		return c.fail(base, err)
	}
	fmt.Fprintln(c.stdout, "configuration reloaded")
	return 0
}

// humanBytes renders a byte count in binary units: 512 B, 1.5 KiB, 12.0 MiB.
func humanBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// humanSeconds renders a duration in seconds compactly: 45s, 3m05s, 2h07m,
// 3d04h.
func humanSeconds(s float64) string {
	if math.IsNaN(s) || s < 0 {
		return "-"
	}
	n := int64(s)
	switch {
	case n < 60:
		return fmt.Sprintf("%ds", n)
	case n < 3600:
		return fmt.Sprintf("%dm%02ds", n/60, n%60)
	case n < 86400:
		return fmt.Sprintf("%dh%02dm", n/3600, n%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", n/86400, n%86400/3600)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line whatever a reason string holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// printConnectionDetail prints one connection: its 4-tuples, then every
// field of its detail as "section.key  value" lines, sorted, so nothing the
// data path reports is hidden (profiles, options read back, TCP_INFO, proxy
// buffers).
func printConnectionDetail(w io.Writer, d api.ConnectionDetail) {
	printConnections(w, []api.ConnectionStatus{d.ConnectionStatus}, 1)
	if len(d.Detail) == 0 {
		fmt.Fprintln(w, "\n(no detail for this connection type)")
		return
	}
	var v any
	if err := json.Unmarshal(d.Detail, &v); err != nil {
		fmt.Fprintf(w, "\ndetail: %s\n", d.Detail)
		return
	}
	var lines [][2]string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, e)
			}
		default:
			s := fmt.Sprint(x)
			if f, ok := x.(float64); ok {
				s = strconv.FormatFloat(f, 'f', -1, 64)
				if strings.HasSuffix(prefix, "_ns") {
					s = time.Duration(int64(f)).String()
				}
			}
			lines = append(lines, [2]string{prefix, s})
		}
	}
	walk("", v)
	sort.Slice(lines, func(i, j int) bool { return lines[i][0] < lines[j][0] })
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%s\n", l[0], l[1])
	}
	tw.Flush()
}

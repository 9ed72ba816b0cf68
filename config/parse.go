package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds what Load reads: a configuration is text written by
// people and tools, and a bound keeps `check` from reading a device or a
// mistakenly named multi-gigabyte file into memory.
const MaxFileSize = 64 << 20

// Load reads the configuration file at path and parses it (see Parse).
func Load(path string) (*Config, error) {
	data, err := readRegular(path, MaxFileSize)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return Parse(data, path)
}

// Parse decodes one YAML configuration, fills in defaults and built-in
// objects, resolves relative file paths against file's directory (the
// working directory when file is "") and validates the result. It reports
// every problem at once as Errors, sorted by line. file is used in messages
// and for path resolution only; it is not read.
func Parse(data []byte, file string) (*Config, error) {
	p := &parser{file: file, lines: map[string]int{}, nulls: map[string]bool{}, bad: map[string]bool{}}
	root := p.document(data)
	if root == nil {
		return nil, p.result()
	}
	p.walk(root, reflect.TypeFor[Config](), "")
	cfg := p.decode(data, root)
	if cfg == nil {
		return nil, p.result()
	}
	cfg.File = file
	cfg.Source = append([]byte(nil), data...) // the caller may reuse data
	cfg.lines = p.lines
	v := &validator{cfg: cfg, p: p}
	v.complete()
	v.validate()
	if err := p.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parser holds what is learnt about the source while decoding: the line of
// every object path, and the paths whose values could not be decoded (so
// validation does not pile follow-on complaints onto them).
type parser struct {
	file    string
	lines   map[string]int  // object path -> line of its key (or list item)
	nulls   map[string]bool // paths written with an empty (null) value
	bad     map[string]bool // paths whose value was rejected while decoding
	errs    Errors
	notices []*Error
	changed bool // the walk removed or replaced nodes
	byLine  map[int][]string
}

func (p *parser) add(line int, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// markBad records that the value at path could not be decoded. The root
// ("") is never marked: that would silence the whole validation.
func (p *parser) markBad(path string) {
	if path != "" {
		p.bad[path] = true
	}
}

// suppressed reports whether path is at or under a value that failed to decode.
func (p *parser) suppressed(path string) bool {
	for ; path != ""; path = parentPath(path) {
		if p.bad[path] {
			return true
		}
	}
	return false
}

// has reports whether the operator wrote a (non-empty) value at path.
func (p *parser) has(path string) bool {
	_, ok := p.lines[path]
	return ok && !p.nulls[path]
}

// lineFor returns the line of path or of its nearest ancestor that has one.
func (p *parser) lineFor(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// pathAt guesses the object path of a message that only carries a line:
// the deepest path whose key sits on that line.
func (p *parser) pathAt(line int) string { return p.pathAtKey(line, "") }

// pathAtKey is pathAt preferring a path that ends in key.
func (p *parser) pathAtKey(line int, key string) string {
	if p.byLine == nil {
		p.byLine = map[int][]string{}
		for path, l := range p.lines {
			p.byLine[l] = append(p.byLine[l], path)
		}
	}
	best, bestMatch := "", false
	for _, path := range p.byLine[line] {
		match := key != "" && (path == key || strings.HasSuffix(path, "."+key))
		switch {
		case match && !bestMatch:
		case match != bestMatch:
			continue
		case len(path) < len(best), len(path) == len(best) && path > best:
			continue
		}
		best, bestMatch = path, match
	}
	return best
}

func (p *parser) result() error {
	if len(p.errs) == 0 {
		return nil
	}
	sortErrors(p.errs)
	return p.errs
}

func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a yaml.v3 error into Errors entries with the line split
// out; prefix says whether it came from reading the syntax or decoding.
func (p *parser) yamlError(err error, prefix string) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			p.decodeMessage(msg)
		}
		return
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.add(line, p.pathAt(line), "%s%s", prefix, m[2])
		return
	}
	p.add(0, "", "%s%s", prefix, strings.TrimPrefix(msg, "yaml: "))
}

// document parses data into a node tree and returns its root mapping, or nil
// after recording why there is no usable document.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "", "the configuration is empty: it needs at least one virtual and one pool (see examples/demo.yaml)")
		} else {
			p.yamlError(err, "YAML syntax: ")
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.yamlError(err, "YAML syntax: ")
		return nil
	default:
		p.add(extra.Line, "", "a second YAML document starts here: a configuration is exactly one document (remove the '---' separator and merge the documents)")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.add(0, "", "the configuration is empty")
		return nil
	}
	root := doc.Content[0]
	if isNull(root) {
		p.add(root.Line, "", "the configuration is empty: it needs at least one virtual and one pool (see examples/demo.yaml)")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, "", "the top level must be a mapping of sections (%s), not %s", strings.Join(yamlKeys(reflect.TypeFor[Config]()), ", "), nodeKind(root))
		return nil
	}
	return root
}

// decode fills a Config from the checked node tree. When the walk found
// nothing to correct, the source is decoded again with a yaml.Decoder in
// KnownFields mode, so yaml.v3's own strictness backs up the walk; when the
// walk removed bad keys, the corrected tree is decoded instead so that the
// rest of the file is still checked.
func (p *parser) decode(data []byte, root *yaml.Node) *Config {
	cfg := &Config{}
	var err error
	if p.changed {
		err = root.Decode(cfg)
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		err = dec.Decode(cfg)
	}
	if err == nil {
		return cfg
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		// yaml.v3 keeps decoding after a type error: the rest is usable.
		p.yamlError(err, "")
		return cfg
	}
	p.yamlError(err, "cannot decode: ")
	return nil
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	cannotRE       = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) (?:`(.*)` )?into (\\S+)$")
	anyLineRE      = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// decodeMessage translates one yaml.v3 type-error message.
func (p *parser) decodeMessage(msg string) {
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path := p.pathAtKey(line, m[2])
		if t, ok := schemaTypes()[m[3]]; ok {
			p.add(line, path, "%s", unknownKeyMsg(m[2], t))
		} else {
			p.add(line, path, "unknown key %q", m[2])
		}
		return
	}
	if m := cannotRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path := p.pathAt(line)
		p.markBad(path)
		got := "a " + tagName(m[2])
		if m[3] != "" {
			got = strconv.Quote(m[3])
		}
		p.add(line, path, "expected %s, got %s", goTypeName(m[4]), got)
		return
	}
	if m := anyLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path := p.pathAt(line)
		p.markBad(path)
		p.add(line, path, "%s", m[2])
		return
	}
	p.add(0, "", "%s", msg)
}

func tagName(tag string) string {
	switch tag {
	case "str":
		return "string"
	case "int":
		return "number"
	case "float":
		return "decimal number"
	case "bool":
		return "boolean"
	case "map":
		return "mapping"
	case "seq":
		return "list"
	case "null":
		return "empty value"
	}
	return tag
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping of names"
	}
	if st, ok := schemaTypes()[t]; ok {
		return "a " + typeNoun(st) + " (a mapping)"
	}
	return t
}

var (
	durationType    = reflect.TypeFor[Duration]()
	sizeType        = reflect.TypeFor[Size]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// walk checks node n against the schema type t before decoding: it records
// the line of every key and list item under its object path, rejects unknown
// keys (with the valid ones and a suggestion), duplicate keys, values of the
// wrong shape and malformed durations and sizes. Rejected parts are removed
// or replaced by an empty value so that decoding and validation can go on
// and report the rest of the file. It returns the node to keep in n's place.
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		// Aliased content is checked where its anchor is written. Scalars are
		// checked here too, because a bad duration behind an alias would
		// otherwise abort the whole decode.
		if (t == durationType || t == sizeType) && n.Alias != nil {
			if n.Alias.Kind != yaml.ScalarNode {
				return p.reject(n, t, path, "expected a %s, got an alias of a %s", unitNoun(t), nodeKind(n.Alias))
			}
			return p.walkUnit(n, n.Alias.Value, t, path)
		}
		return n
	}
	if isNull(n) {
		if path != "" {
			p.nulls[path] = true
		}
		return n
	}
	switch {
	case t == durationType || t == sizeType:
		if n.Kind != yaml.ScalarNode {
			return p.reject(n, t, path, "expected a %s, got a %s", unitNoun(t), nodeKind(n))
		}
		return p.walkUnit(n, n.Value, t, path)
	case reflect.PointerTo(t).Implements(unmarshalerType):
		// A scalar type with its own syntax (a buffer size that may be
		// "auto", a rate): check it with its own decoder.
		if n.Kind != yaml.ScalarNode {
			return p.reject(n, t, path, "expected a single value, got a %s", nodeKind(n))
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return p.reject(n, t, path, "%s", anyLineRE.ReplaceAllString(err.Error(), "$2"))
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return p.reject(n, t, path, "a %s is a mapping of keys (%s), not a %s", typeNoun(t), strings.Join(yamlKeys(t), ", "), nodeKind(n))
		}
		p.walkMapping(n, t, path)
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return p.reject(n, t, path, "expected a mapping of names to %ss, got a %s", typeNoun(deref(t.Elem())), nodeKind(n))
		}
		p.walkMapping(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return p.reject(n, t, path, "expected a list (write [a, b] or one \"- item\" per line), got a %s", nodeKind(n))
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			p.lines[ip] = item.Line
			if isNull(item) {
				// yaml.v3 drops null items from lists of non-pointers, which
				// would shift the indexes of every later item.
				n.Content[i] = p.reject(item, t.Elem(), ip, "this list item is empty: fill it in or remove it")
				continue
			}
			n.Content[i] = p.walk(item, t.Elem(), ip)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return p.reject(n, t, path, "expected a single value, got a %s", nodeKind(n))
		}
		// Check numbers and booleans here, where the node is known: a
		// decoder error carries only a line, which is ambiguous in flow
		// mappings such as {address: 10.0.0.1:80, ratio: x}.
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			var x int64
			if err := n.Decode(&x); err != nil || int64(int(x)) != x {
				return p.reject(n, t, path, "expected a whole number, got %q", n.Value)
			}
		case reflect.Bool:
			var b bool
			if err := n.Decode(&b); err != nil {
				return p.reject(n, t, path, "expected true or false, got %q", n.Value)
			}
		}
	}
	return n
}

func (p *parser) walkUnit(n *yaml.Node, value string, t reflect.Type, path string) *yaml.Node {
	var err error
	if t == durationType {
		_, err = ParseDuration(value)
	} else {
		_, err = ParseSize(value)
	}
	if err != nil {
		return p.reject(n, t, path, "%v", err)
	}
	return n
}

// reject records a problem with n and returns an empty value of type t in
// its place, so that decoding goes on, list indexes stay in step with the
// source, and the field is treated as not written (it gets its default).
func (p *parser) reject(n *yaml.Node, t reflect.Type, path, format string, args ...any) *yaml.Node {
	p.add(n.Line, path, format, args...)
	p.markBad(path)
	p.nulls[path] = true
	p.changed = true
	z := &yaml.Node{Kind: yaml.ScalarNode, Line: n.Line, Column: n.Column}
	t = deref(t)
	switch {
	case t == durationType, t == sizeType:
		z.Tag, z.Value = "!!int", "0"
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		z.Kind, z.Tag = yaml.MappingNode, "!!map"
	case t.Kind() == reflect.Slice:
		z.Kind, z.Tag = yaml.SequenceNode, "!!seq"
	case t.Kind() == reflect.Bool:
		z.Tag, z.Value = "!!bool", "false"
	case t.Kind() == reflect.String:
		z.Tag = "!!str"
	default:
		z.Tag, z.Value = "!!int", "0"
	}
	return z
}

func (p *parser) walkMapping(n *yaml.Node, t reflect.Type, path string) {
	seen := map[string]int{}
	out := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.add(k.Line, path, "keys must be plain names, not a %s", nodeKind(k))
			p.markBad(path)
			p.changed = true
			continue
		}
		name := k.Value
		if name == "<<" && k.ShortTag() == "!!merge" {
			// YAML merge key: yaml.v3 merges it while decoding.
			out = append(out, k, v)
			continue
		}
		kp := joinPath(path, name)
		if first, dup := seen[name]; dup {
			p.add(k.Line, kp, "duplicate key %q: it is already written at line %d; remove one of them", name, first)
			p.changed = true
			continue
		}
		seen[name] = k.Line
		var vt reflect.Type
		if t.Kind() == reflect.Struct {
			f, ok := fieldByTag(t, name)
			if !ok {
				p.add(k.Line, kp, "%s", unknownKeyMsg(name, t))
				p.changed = true
				continue
			}
			vt = f
		} else {
			vt = t.Elem()
		}
		p.lines[kp] = k.Line
		out = append(out, k, p.walk(v, vt, kp))
	}
	n.Content = out
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.ScalarNode:
		return "single value (" + strconv.Quote(n.Value) + ")"
	}
	return "document"
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func unitNoun(t reflect.Type) string {
	if t == sizeType {
		return "size (32768, 64KiB, 1MiB)"
	}
	return "duration (5s, 250ms, 2m, indefinite)"
}

// fieldByTag returns the type of t's field whose yaml name is name.
func fieldByTag(t reflect.Type, name string) (reflect.Type, bool) {
	for f := range t.Fields() {
		if yamlName(f) == name {
			return f.Type, true
		}
	}
	return nil, false
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" {
		return ""
	}
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

// yamlKeys lists the keys a struct type accepts, in schema order.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range deref(t).Fields() {
		if name := yamlName(f); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// typeNoun names a schema type the way an operator thinks of it.
func typeNoun(t reflect.Type) string {
	switch deref(t) {
	case reflect.TypeFor[Config]():
		return "configuration"
	case reflect.TypeFor[Management]():
		return "management section"
	case reflect.TypeFor[Log]():
		return "log section"
	case reflect.TypeFor[Monitor]():
		return "monitor"
	case reflect.TypeFor[Pool]():
		return "pool"
	case reflect.TypeFor[Passive]():
		return "passive section"
	case reflect.TypeFor[Member]():
		return "pool member"
	case reflect.TypeFor[Profiles]():
		return "profiles section"
	case reflect.TypeFor[HTTPProfile]():
		return "http profile"
	case reflect.TypeFor[ClientSSLProfile]():
		return "client_ssl profile"
	case reflect.TypeFor[SNICert]():
		return "sni entry"
	case reflect.TypeFor[ServerSSLProfile]():
		return "server_ssl profile"
	case reflect.TypeFor[PersistenceProfile]():
		return "persistence profile"
	case reflect.TypeFor[TCPProfile]():
		return "tcp profile"
	case reflect.TypeFor[SNATPool]():
		return "snat pool"
	case reflect.TypeFor[Virtual]():
		return "virtual"
	}
	return deref(t).Name()
}

// schemaTypes maps the names yaml.v3 prints ("config.Pool") to the types.
func schemaTypes() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			visit(t.Elem())
		case reflect.Struct:
			if _, ok := m[t.String()]; ok {
				return
			}
			m[t.String()] = t
			for f := range t.Fields() {
				if yamlName(f) != "" {
					visit(f.Type)
				}
			}
		}
	}
	visit(reflect.TypeFor[Config]())
	return m
}

// notBuilt names keys of features the reference has and Fulcrum will have,
// but does not yet: they are refused with the reason rather than as typos.
func notBuilt(key string, t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Config]():
		switch key {
		case "mirroring":
			return "there is no top-level mirroring section: connections are mirrored per virtual server (mirror: true), persistence records per persistence profile (mirror: true), on the channel at failover.mirror_port between devices' mirror_addresses"
		case "etherip":
			return "EtherIP tunnels are configured in tunnels, with type: etherip (docs/etherip.md)"
		case "vlan", "vlan_group", "self_ip", "selfs", "self":
			return "networks are configured in vlans, vlan_groups, tunnels and self_ips (docs/etherip.md)"
		}
	case reflect.TypeFor[Virtual]():
		switch key {
		case "lbsp", "ipv6_persistence":
			return fmt.Sprintf("%q is not a virtual's key: LBSP is a persistence profile type (profiles.persistence.NAME.type: lbsp), set with persistence: NAME", key)
		case "connection_mirroring":
			return "connection mirroring is set with mirror: true"
		case "traffic_group":
			return "a virtual's traffic group is not set by a key: it is the traffic group whose floating addresses hold its destination"
		}
	}
	return ""
}

func unknownKeyMsg(key string, t reflect.Type) string {
	if msg := notBuilt(key, t); msg != "" {
		return msg
	}
	keys := yamlKeys(t)
	msg := fmt.Sprintf("unknown key %q in %s (valid keys: %s)", key, typeNoun(t), strings.Join(keys, ", "))
	if s := suggest(key, keys); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg
}

// suggest returns the candidate closest to s when it is a plausible typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), c)
		if d < bestD || (d == bestD && best != "" && c < best) {
			best, bestD = c, d
		}
	}
	if bestD > 2 || bestD >= len(s) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// readRegular reads a regular file of at most limit bytes. Devices, FIFOs
// and directories are refused before opening, so a typo such as
// /dev/stdin cannot hang `check`.
func readRegular(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// sortedKeys returns a map's keys in order, for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package api

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// secretKeys are the configuration keys whose values GET /api/v1/config
// never shows: the management token and the cookie-persistence HMAC secret.
// File paths (token_file, cert, key) are not secrets.
var secretKeys = map[string]bool{"token": true, "secret": true}

// RedactConfig returns the YAML configuration src with the value of every
// secret key replaced by Redacted. A document without secrets is returned
// byte for byte (comments and layout kept); one with secrets is re-encoded
// from its node tree, which keeps comments and order but may change
// indentation and quoting.
func RedactConfig(src []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		// The source was applied, so it parsed once; failing here is ours.
		return nil, fmt.Errorf("re-reading the running configuration: %w", err)
	}
	if !redactNode(&doc, map[*yaml.Node]bool{}) {
		return src, nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding the running configuration: %w", err)
	}
	enc.Close()
	return b.Bytes(), nil
}

// redactNode replaces secret scalars under n and reports whether it changed
// anything. seen guards against alias cycles.
func redactNode(n *yaml.Node, seen map[*yaml.Node]bool) bool {
	if n == nil || seen[n] {
		return false
	}
	seen[n] = true
	changed := false
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias // "token: *tok": hide the anchored value itself
			}
			if secretKeys[k.Value] && v.Kind == yaml.ScalarNode && v.Value != "" {
				v.Value, v.Tag, v.Style = Redacted, "!!str", yaml.DoubleQuotedStyle
				changed = true
			}
		}
	}
	for _, c := range n.Content {
		changed = redactNode(c, seen) || changed
	}
	if n.Alias != nil {
		changed = redactNode(n.Alias, seen) || changed
	}
	return changed
}

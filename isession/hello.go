package isession

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/fulcrum-adc/fulcrum/isession/codec"
	"github.com/fulcrum-adc/fulcrum/isession/dedup"
)

// Each end of a new tunnel connection sends one hello right after the TLS
// handshake and reads the peer's; both then compute the same Outcome from
// the two (Negotiate is symmetric), so no third message is needed and
// neither side can talk the other into a setting it has not enabled (F5:
// "only those settings that are enabled on both sides are used").
//
// On the wire a hello is the 4 bytes "FISn" (n the protocol version, 1),
// a big-endian uint16 length and that many bytes of JSON. Unknown JSON
// fields are ignored so a later version can add capabilities; a hello
// longer than maxHello is refused before it is read.

// Version is the iSession protocol version this package speaks.
const Version = 1

// ALPN is the TLS application protocol both ends require.
const ALPN = "fulcrum-isession/1"

const (
	maxHello   = 4096
	helloMagic = "FIS"
)

// Hello is what one end supports and has enabled. Everything in it is a
// capability the sender is willing to use; Negotiate keeps what both are.
type Hello struct {
	// Device names the sender (its certificate's name), for logs.
	Device string `json:"device"`
	// Codecs are the compression codecs the sender has enabled, in its
	// order of preference. Empty: compression off.
	Codecs []string `json:"codecs,omitempty"`
	// Adaptive: the sender picks a codec per block (F5
	// adaptive-compression).
	Adaptive bool `json:"adaptive,omitempty"`
	// DeflateLevel is the level the sender compresses deflate blocks with
	// (informational: decoding needs no level).
	DeflateLevel int `json:"deflate_level,omitempty"`
	// Dedup is the sender's de-duplication scheme, empty when disabled.
	// Both ends must name the same scheme (chunking parameters included)
	// for de-duplication to be used: F5's rule for SDD codecs.
	Dedup string `json:"dedup,omitempty"`
	// DedupCache is the most bytes of chunks the sender will hold per
	// direction of one tunnel connection; the smaller of the two is used.
	DedupCache int64 `json:"dedup_cache,omitempty"`
	// DedupKey keys the sender's chunk hash (dedup.Key): drawn at random
	// for each tunnel connection, known only to the two ends.
	DedupKey []byte `json:"dedup_key,omitempty"`
	// PortTransparency: the sender keeps (or accepts) the original
	// destination port of each inner connection.
	PortTransparency bool `json:"port_transparency,omitempty"`
	// InitialWindow and MaxWindow bound the per-stream flow-control window
	// the sender grants (bytes).
	InitialWindow int `json:"initial_window"`
	MaxWindow     int `json:"max_window"`
	// MaxStreams is how many streams the sender accepts at once on this
	// connection.
	MaxStreams int `json:"max_streams"`
}

// Outcome is what a tunnel connection uses: the intersection of the two
// hellos. Both ends compute the same Outcome.
type Outcome struct {
	// Codecs usable in both directions, in the preference order of the
	// end that dialed (the client); empty means no compression.
	Codecs []codec.Codec
	// Adaptive is true when both ends enabled adaptive compression.
	Adaptive bool
	// Dedup is the common scheme, empty when de-duplication is off.
	Dedup string
	// DedupCache is the per-direction chunk cache budget (bytes).
	DedupCache int64
	// PortTransparency is true when both ends keep original ports.
	PortTransparency bool
	// DedupMismatch is set when both ends enabled de-duplication with
	// different schemes (so it is off).
	DedupMismatch bool
}

// String is the outcome as logs and `fulcrum show isessions` print it.
func (o Outcome) String() string {
	comp := "compression off"
	if len(o.Codecs) > 0 {
		names := make([]string, len(o.Codecs))
		for i, c := range o.Codecs {
			names[i] = c.String()
		}
		comp = fmt.Sprintf("compression %v", names)
		if o.Adaptive {
			comp += " adaptive"
		}
	}
	dd := "dedup off"
	switch {
	case o.Dedup != "":
		dd = fmt.Sprintf("dedup %s cache %d MiB", o.Dedup, o.DedupCache>>20)
	case o.DedupMismatch:
		dd = "dedup off (schemes differ)"
	}
	pt := "port transparency off"
	if o.PortTransparency {
		pt = "port transparency on"
	}
	return comp + ", " + dd + ", " + pt
}

// Negotiate returns the outcome of client's and server's hellos. It is
// what both ends run; an error means the two cannot talk at all.
func Negotiate(client, server *Hello) (Outcome, error) {
	var o Outcome
	for _, name := range client.Codecs {
		c, err := codec.ParseCodec(name)
		if err != nil || c == codec.None || slices.Contains(o.Codecs, c) {
			continue // a codec one end does not know is one it did not enable
		}
		if slices.Contains(server.Codecs, name) {
			o.Codecs = append(o.Codecs, c)
		}
	}
	o.Adaptive = client.Adaptive && server.Adaptive && len(o.Codecs) > 0
	if client.Dedup != "" && server.Dedup != "" {
		if client.Dedup == server.Dedup {
			o.Dedup = client.Dedup
			o.DedupCache = min(client.DedupCache, server.DedupCache)
			if o.DedupCache <= 0 {
				o.Dedup = ""
			}
		} else {
			o.DedupMismatch = true
		}
	}
	o.PortTransparency = client.PortTransparency && server.PortTransparency
	return o, nil
}

// writeHello sends h.
func writeHello(w io.Writer, h *Hello) error {
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(body) > maxHello {
		return fmt.Errorf("isession: hello of %d bytes exceeds %d", len(body), maxHello)
	}
	msg := make([]byte, 0, 6+len(body))
	msg = append(msg, helloMagic...)
	msg = append(msg, '0'+Version)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(body)))
	_, err = w.Write(append(msg, body...))
	return err
}

// ErrHello wraps every malformed or incompatible hello.
var ErrHello = errors.New("isession: bad hello")

// readHello reads the peer's hello.
func readHello(r io.Reader) (*Hello, error) {
	var head [6]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("isession: reading hello: %w", err)
	}
	return parseHello(head[:], r)
}

// parseHello checks the 6-byte head and reads and decodes the body.
func parseHello(head []byte, r io.Reader) (*Hello, error) {
	if string(head[:3]) != helloMagic {
		return nil, fmt.Errorf("%w: not an iSession peer (got %q)", ErrHello, head[:3])
	}
	if v := head[3]; v != '0'+Version {
		return nil, fmt.Errorf("%w: protocol version %q, this device speaks %d", ErrHello, v, Version)
	}
	n := int(binary.BigEndian.Uint16(head[4:6]))
	if n > maxHello {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrHello, n, maxHello)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("%w: truncated: %v", ErrHello, err)
	}
	h := new(Hello)
	if err := json.Unmarshal(body, h); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHello, err)
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHello, err)
	}
	return h, nil
}

// Limits a peer's hello must respect: a window beyond these is a peer
// asking us to buffer more than any path needs.
const (
	minWindow     = 16 << 10
	maxWindowCap  = 256 << 20
	maxStreamsCap = 1 << 16
	maxCodecs     = 16
	maxDeviceName = 253
)

func (h *Hello) validate() error {
	switch {
	case len(h.Device) > maxDeviceName:
		return errors.New("device name too long")
	case len(h.Codecs) > maxCodecs:
		return errors.New("too many codecs")
	case h.InitialWindow < minWindow || h.InitialWindow > maxWindowCap:
		return fmt.Errorf("initial window %d out of range", h.InitialWindow)
	case h.MaxWindow < h.InitialWindow || h.MaxWindow > maxWindowCap:
		return fmt.Errorf("max window %d out of range", h.MaxWindow)
	case h.MaxStreams < 1 || h.MaxStreams > maxStreamsCap:
		return fmt.Errorf("max streams %d out of range", h.MaxStreams)
	case h.DedupCache < 0:
		return errors.New("negative dedup cache")
	case h.Dedup != "" && len(h.DedupKey) != len(dedup.Key{}):
		return fmt.Errorf("dedup key of %d bytes, want %d", len(h.DedupKey), len(dedup.Key{}))
	}
	return nil
}

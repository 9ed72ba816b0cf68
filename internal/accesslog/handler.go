package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
)

// Format is an access-log line format.
type Format string

const (
	// JSON writes one JSON object per line: "time" then every attribute.
	JSON Format = "json"
	// Text writes a HAProxy-httplog-like line (docs/management.md):
	//
	//	TIME CLIENT [VIRTUAL] MEMBER Tq/Tc/Tr/Tt STATUS BYTES_OUT BYTES_IN TERM {HOST} "METHOD TARGET" [key=value ...]
	Text Format = "text"
)

// The attributes the data path puts on each request record. The text format
// places these in fixed columns; any other attribute is appended as
// key=value so nothing is lost.
const (
	KeyVirtual     = "virtual"
	KeyClient      = "client"
	KeyMethod      = "method"
	KeyTarget      = "target"
	KeyHost        = "host"
	KeyStatus      = "status"
	KeyMember      = "member"
	KeyBytesIn     = "bytes_in"
	KeyBytesOut    = "bytes_out"
	KeyTRequest    = "t_request_ms"
	KeyTConnect    = "t_connect_ms"
	KeyTResponse   = "t_response_ms"
	KeyTTotal      = "t_total_ms"
	KeyTermination = "termination"
)

// timeLayout is the timestamp of both formats: local time with
// milliseconds and the zone offset, sortable and unambiguous.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Handler is the slog.Handler of the access log. It writes each record with
// a single Write to its writer; writes are serialised.
type Handler struct {
	out    *output
	format Format
	attrs  []slog.Attr // from WithAttrs, keys already group-qualified
	group  string      // prefix from WithGroup, "a.b."
}

type output struct {
	mu sync.Mutex
	w  io.Writer
}

// NewHandler returns a handler writing format to w. An unknown format is an
// error (the validator refuses it before this is reached).
func NewHandler(w io.Writer, format Format) (*Handler, error) {
	switch format {
	case "":
		format = JSON
	case JSON, Text:
	default:
		return nil, fmt.Errorf("access log format %q: want json or text", format)
	}
	return &Handler{out: &output{w: w}, format: format}, nil
}

// Enabled reports true: the access log has no levels; it is on or off.
func (h *Handler) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), h.qualify(attrs)...)
	return &n
}

// WithGroup returns a handler that prefixes later keys with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.group = h.group + name + "."
	return &n
}

func (h *Handler) qualify(attrs []slog.Attr) []slog.Attr {
	var out []slog.Attr
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			return
		}
		if a.Value.Kind() == slog.KindGroup {
			p := prefix
			if a.Key != "" {
				p += a.Key + "."
			}
			for _, g := range a.Value.Group() {
				add(p, g)
			}
			return
		}
		a.Key = prefix + a.Key
		out = append(out, a)
	}
	for _, a := range attrs {
		add(h.group, a)
	}
	return out
}

// Handle formats r and writes it as one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	attrs := make([]slog.Attr, 0, len(h.attrs)+r.NumAttrs()+1)
	attrs = append(attrs, h.attrs...)
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, a)
		return true
	})
	attrs = append(attrs, h.qualify(own)...)
	if r.Message != "request" && r.Message != "" {
		// Not the data path's request record: keep its message.
		attrs = append([]slog.Attr{slog.String("msg", r.Message)}, attrs...)
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	var buf bytes.Buffer
	if h.format == Text {
		writeText(&buf, t, attrs)
	} else {
		writeJSON(&buf, t, attrs)
	}
	buf.WriteByte('\n')
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(buf.Bytes())
	return err
}

func writeJSON(buf *bytes.Buffer, t time.Time, attrs []slog.Attr) {
	buf.WriteString(`{"time":"`)
	buf.WriteString(t.Format(timeLayout))
	buf.WriteByte('"')
	for _, a := range attrs {
		buf.WriteByte(',')
		jsonString(buf, a.Key)
		buf.WriteByte(':')
		jsonValue(buf, a.Value)
	}
	buf.WriteByte('}')
}

func jsonString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

func jsonValue(buf *bytes.Buffer, v slog.Value) {
	switch v.Kind() {
	case slog.KindString:
		jsonString(buf, v.String())
	case slog.KindInt64:
		buf.WriteString(strconv.FormatInt(v.Int64(), 10))
	case slog.KindUint64:
		buf.WriteString(strconv.FormatUint(v.Uint64(), 10))
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			jsonString(buf, strconv.FormatFloat(f, 'g', -1, 64))
			return
		}
		buf.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
	case slog.KindBool:
		buf.WriteString(strconv.FormatBool(v.Bool()))
	case slog.KindDuration:
		// Milliseconds, like the t_*_ms timers.
		buf.WriteString(strconv.FormatFloat(float64(v.Duration().Microseconds())/1000, 'f', -1, 64))
	case slog.KindTime:
		jsonString(buf, v.Time().Format(timeLayout))
	default:
		a := v.Any()
		if err, ok := a.(error); ok {
			jsonString(buf, err.Error())
			return
		}
		b, err := json.Marshal(a)
		if err != nil {
			jsonString(buf, fmt.Sprint(a))
			return
		}
		buf.Write(b)
	}
}

// textColumns are the attributes the text format prints in fixed columns.
var textColumns = map[string]bool{
	KeyVirtual: true, KeyClient: true, KeyMethod: true, KeyTarget: true, KeyHost: true, KeyStatus: true,
	KeyMember: true, KeyBytesIn: true, KeyBytesOut: true, KeyTRequest: true, KeyTConnect: true,
	KeyTResponse: true, KeyTTotal: true, KeyTermination: true,
}

func writeText(buf *bytes.Buffer, t time.Time, attrs []slog.Attr) {
	col := make(map[string]slog.Value, len(textColumns))
	for _, a := range attrs {
		if textColumns[a.Key] {
			col[a.Key] = a.Value
		}
	}
	str := func(k string) string {
		v, ok := col[k]
		if !ok {
			return ""
		}
		return textValue(v)
	}
	ms := func(k string) string {
		v, ok := col[k]
		if !ok {
			return "-"
		}
		return millis(v)
	}
	buf.WriteString(t.Format(timeLayout))
	buf.WriteByte(' ')
	buf.WriteString(field(str(KeyClient)))
	buf.WriteString(" [")
	buf.WriteString(field(str(KeyVirtual)))
	buf.WriteString("] ")
	buf.WriteString(field(str(KeyMember)))
	fmt.Fprintf(buf, " %s/%s/%s/%s", ms(KeyTRequest), ms(KeyTConnect), ms(KeyTResponse), ms(KeyTTotal))
	buf.WriteByte(' ')
	buf.WriteString(field(str(KeyStatus)))
	buf.WriteByte(' ')
	buf.WriteString(field(str(KeyBytesOut)))
	buf.WriteByte(' ')
	buf.WriteString(field(str(KeyBytesIn)))
	buf.WriteByte(' ')
	buf.WriteString(field(str(KeyTermination)))
	buf.WriteString(" {")
	buf.WriteString(field(str(KeyHost)))
	buf.WriteString("} ")
	// The request is always quoted, escaped as a Go string so that a
	// client's bytes can never break the line or forge a field.
	req := str(KeyMethod) + " " + str(KeyTarget)
	if _, ok := col[KeyMethod]; !ok {
		req = "-"
	}
	buf.WriteString(strconv.Quote(req))
	for _, a := range attrs {
		if textColumns[a.Key] {
			continue
		}
		buf.WriteByte(' ')
		buf.WriteString(field(a.Key))
		buf.WriteByte('=')
		buf.WriteString(field(textValue(a.Value)))
	}
}

func textValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(timeLayout)
	case slog.KindDuration:
		return strconv.FormatFloat(float64(v.Duration().Microseconds())/1000, 'f', -1, 64) + "ms"
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// millis prints a timer in whole milliseconds, as HAProxy does; -1 (the
// stage did not happen) stays -1.
func millis(v slog.Value) string {
	switch v.Kind() {
	case slog.KindInt64:
		return strconv.FormatInt(v.Int64(), 10)
	case slog.KindUint64:
		return strconv.FormatUint(v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if f < 0 {
			return "-1"
		}
		return strconv.FormatFloat(math.Round(f), 'f', 0, 64)
	case slog.KindDuration:
		return strconv.FormatInt(v.Duration().Milliseconds(), 10)
	}
	return field(textValue(v))
}

// field makes one space-free token: "-" for empty, a quoted Go string when
// s holds a space, a quote, a backslash, a brace or a non-printable byte.
func field(s string) string {
	if s == "" {
		return "-"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '{' || c == '}' {
			return strconv.Quote(s)
		}
	}
	return s
}

package accesslog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// request logs one record with every attribute of the data path's contract.
func request(l *slog.Logger, extra ...any) {
	args := []any{
		KeyVirtual, "vs_web", KeyClient, "192.0.2.7:51234", KeyMethod, "GET", KeyTarget, "/index.html",
		KeyHost, "www.example.com", KeyStatus, 200, KeyMember, "10.0.0.5:80",
		KeyBytesIn, int64(312), KeyBytesOut, int64(5120),
		KeyTRequest, 0.4, KeyTConnect, int64(1), KeyTResponse, 12.6, KeyTTotal, int64(14),
		KeyTermination, "--",
	}
	l.Info("request", append(args, extra...)...)
}

func TestJSONFormatOneObjectPerLine(t *testing.T) {
	var buf bytes.Buffer
	h, err := NewHandler(&buf, JSON)
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	request(l, "retries", 1)
	request(l.With("node", "a").WithGroup("g"), "k", "v")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("line 1 is not JSON: %v: %s", err, lines[0])
	}
	want := map[string]any{
		"virtual": "vs_web", "client": "192.0.2.7:51234", "method": "GET", "target": "/index.html",
		"host": "www.example.com", "status": 200.0, "member": "10.0.0.5:80", "bytes_in": 312.0,
		"bytes_out": 5120.0, "t_request_ms": 0.4, "t_connect_ms": 1.0, "t_response_ms": 12.6,
		"t_total_ms": 14.0, "termination": "--", "retries": 1.0,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, m["time"].(string)); err != nil {
		t.Errorf("time %v: %v", m["time"], err)
	}
	if _, ok := m["msg"]; ok {
		t.Errorf("request records carry no msg: %s", lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
		t.Fatal(err)
	}
	if m["node"] != "a" || m["g.k"] != "v" || m["g.virtual"] != "vs_web" {
		t.Errorf("With/WithGroup attributes lost: %s", lines[1])
	}
}

func TestTextFormatLine(t *testing.T) {
	var buf bytes.Buffer
	h, _ := NewHandler(&buf, Text)
	l := slog.New(h)
	request(l, "retries", 1, "note", "two words")
	line := buf.String()
	ts, rest, _ := strings.Cut(line, " ")
	if _, err := time.Parse(time.RFC3339, ts); err != nil {
		t.Errorf("time %q: %v", ts, err)
	}
	want := `192.0.2.7:51234 [vs_web] 10.0.0.5:80 0/1/13/14 200 5120 312 -- {www.example.com} "GET /index.html" retries=1 note="two words"` + "\n"
	if rest != want {
		t.Errorf("text line\n got %q\nwant %q", rest, want)
	}

	// No member, no connect, a client abort; IPv6 client.
	buf.Reset()
	l.Info("request", KeyVirtual, "v", KeyClient, "[::1]:4000", KeyMethod, "POST", KeyTarget, "/up",
		KeyHost, "", KeyStatus, 400, KeyMember, "", KeyBytesIn, int64(10), KeyBytesOut, int64(0),
		KeyTRequest, int64(3), KeyTConnect, int64(-1), KeyTResponse, float64(-1), KeyTTotal, int64(3),
		KeyTermination, "CR")
	_, rest, _ = strings.Cut(buf.String(), " ")
	if want := `[::1]:4000 [v] - 3/-1/-1/3 400 0 10 CR {-} "POST /up"` + "\n"; rest != want {
		t.Errorf("text line\n got %q\nwant %q", rest, want)
	}
}

// A client's bytes must never break a line or forge a field.
func TestTextFormatEscapesClientBytes(t *testing.T) {
	for _, f := range []Format{Text, JSON} {
		var buf bytes.Buffer
		h, _ := NewHandler(&buf, f)
		slog.New(h).Info("request", KeyMethod, "GET", KeyTarget, "/a\"b\n127.0.0.1 [x]", KeyHost, "evil} {host\r\n", "k", "a b\nc")
		out := buf.String()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Errorf("%s: a client's bytes broke the line: %q", f, out)
		}
		if f == Text && !strings.Contains(out, `{"evil} {host\r\n"} "GET /a\"b\n127.0.0.1 [x]" k="a b\nc"`) {
			t.Errorf("text escaping: %q", out)
		}
	}
}

func TestNewHandlerRefusesUnknownFormat(t *testing.T) {
	if _, err := NewHandler(&bytes.Buffer{}, "xml"); err == nil {
		t.Error("format xml accepted")
	}
}

// TestFileReopenAfterRotate is what logrotate does: rename the file, then
// signal; new lines must go to a new file at the old path.
func TestFileReopenAfterRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("one\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("two\n")) // still the renamed file, as before the signal
	if err := d.Reopen(); err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("three\n"))
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "one\ntwo\n" || string(cur) != "three\n" {
		t.Errorf("rotated %q, current %q", old, cur)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
}

// listenSyslog is a stand-in syslog daemon on a temporary socket.
func listenSyslog(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readDatagram(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64<<10)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestSyslogDatagramPerRecord(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	srv := listenSyslog(t, sock)
	d, err := Open("syslog", Options{SyslogSocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.(*Syslog).now = func() time.Time { return time.Date(2026, 12, 2, 9, 5, 7, 0, time.Local) }
	h, _ := NewHandler(d, Text)
	l := slog.New(h)
	request(l)
	request(l)
	for i := 0; i < 2; i++ {
		got := readDatagram(t, srv)
		prefix := "<134>Dec  2 09:05:07 fulcrum[" + itoa(os.Getpid()) + "]: "
		if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, `"GET /index.html"`) || strings.Contains(got, "\n") {
			t.Errorf("datagram %d: %q", i, got)
		}
	}

	// The daemon restarts (a new socket at the same path): the next line
	// reconnects and arrives.
	srv.Close()
	os.Remove(sock)
	srv2 := listenSyslog(t, sock)
	request(l)
	if got := readDatagram(t, srv2); !strings.Contains(got, "[vs_web]") {
		t.Errorf("after the daemon restarted: %q", got)
	}
}

// TestSyslogNeverBlocks: a daemon that stops reading must cost dropped
// lines, not a stalled data path.
func TestSyslogNeverBlocks(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	listenSyslog(t, sock) // never read
	s, err := DialSyslog(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	line := []byte(strings.Repeat("x", 1000) + "\n")
	start := time.Now()
	var failed error
	for i := 0; i < 20000 && s.Dropped() == 0; i++ {
		if _, err := s.Write(line); err != nil {
			failed = err
		}
	}
	if s.Dropped() == 0 {
		t.Fatal("20000 lines to a socket nobody reads: none dropped")
	}
	if failed == nil {
		t.Error("a dropped line returned no error")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("writes blocked for %v", el)
	}
}

func TestSyslogMissingSocket(t *testing.T) {
	_, err := Open("syslog", Options{SyslogSocket: filepath.Join(t.TempDir(), "none.sock")})
	if err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("missing socket: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

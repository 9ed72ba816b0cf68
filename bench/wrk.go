package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// WrkReport is what wrk (4.x, run with --latency) prints about one run.
type WrkReport struct {
	Requests      int64   // completed requests
	Seconds       float64 // measured duration
	RPS           float64 // "Requests/sec"
	TransferBytes float64 // "Transfer/sec", bytes per second
	LatencyAvgUS  float64
	P50US         float64 // latency percentiles in microseconds
	P75US         float64
	P90US         float64
	P99US         float64
	ErrConnect    int64 // "Socket errors: connect N, read N, write N, timeout N"
	ErrRead       int64
	ErrWrite      int64
	ErrTimeout    int64
	Non2xx3xx     int64 // "Non-2xx or 3xx responses: N"
}

// Errors is the number of failed requests or connections wrk counted. Read
// errors are left out: with "Connection: close" wrk counts every orderly close
// by the server as a read error, which is the expected end of each request.
func (w WrkReport) Errors() int64 {
	return w.ErrConnect + w.ErrWrite + w.ErrTimeout + w.Non2xx3xx
}

// ParseWrk reads wrk's text report. It fails when the report has no
// Requests/sec line (wrk failed to run) or no latency distribution (wrk was
// run without --latency).
func ParseWrk(out string) (WrkReport, error) {
	var r WrkReport
	var haveRPS, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "Latency" && len(f) >= 2 && f[1] != "Distribution":
			v, err := parseWrkTime(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk latency average: %w", err)
			}
			r.LatencyAvgUS = v
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			v, err := parseWrkTime(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk latency %s: %w", f[0], err)
			}
			switch f[0] {
			case "50%", "50.000%":
				r.P50US = v
			case "75%", "75.000%":
				r.P75US = v
			case "90%", "90.000%":
				r.P90US = v
			case "99%", "99.000%":
				r.P99US = v
				haveP99 = true
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk request count %q: %w", f[0], err)
			}
			r.Requests = n
			d, err := parseWrkTime(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("wrk duration: %w", err)
			}
			r.Seconds = d / 1e6
		case f[0] == "Socket" && len(f) >= 3 && f[1] == "errors:":
			// Socket errors: connect 0, read 12, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk socket errors %q: %w", line, err)
				}
				switch f[i] {
				case "connect":
					r.ErrConnect = n
				case "read":
					r.ErrRead = n
				case "write":
					r.ErrWrite = n
				case "timeout":
					r.ErrTimeout = n
				}
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk non-2xx count %q: %w", line, err)
			}
			r.Non2xx3xx = n
		case f[0] == "Requests/sec:" && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk requests/sec %q: %w", f[1], err)
			}
			r.RPS = v
			haveRPS = true
		case f[0] == "Transfer/sec:" && len(f) == 2:
			v, err := parseWrkSize(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk transfer/sec: %w", err)
			}
			r.TransferBytes = v
		}
	}
	if !haveRPS {
		return r, errors.New("wrk report has no Requests/sec line: " + firstLines(out, 4))
	}
	if !haveP99 {
		return r, errors.New("wrk report has no latency distribution (run wrk with --latency)")
	}
	return r, nil
}

// parseWrkTime turns wrk's "601.00us", "1.23ms", "2.00s", "1.50m" into microseconds.
func parseWrkTime(s string) (float64, error) {
	units := []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"m", 60e6}, {"h", 3600e6}, {"s", 1e6}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			if err != nil {
				return 0, fmt.Errorf("time %q: %w", s, err)
			}
			return v * u.us, nil
		}
	}
	return 0, fmt.Errorf("time %q: unknown unit", s)
}

// parseWrkSize turns wrk's "17.31MB" (binary multiples) into bytes.
func parseWrkSize(s string) (float64, error) {
	mult := map[string]float64{"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "B": 1}
	for _, suf := range []string{"KB", "MB", "GB", "TB", "B"} {
		if strings.HasSuffix(s, suf) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, suf), 64)
			if err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return v * mult[suf], nil
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return v, nil
}

// IperfReport is what iperf3 -J reports about one client run.
type IperfReport struct {
	SentBitsPerSec     float64
	ReceivedBitsPerSec float64 // what the server received: the figure reported
	Retransmits        int64
	Seconds            float64
	Intervals          int // per-second reports
	StalledIntervals   int // of which moved no byte: the path stopped
}

// ParseIperf3 reads iperf3's JSON report (iperf3 -c ... -J).
func ParseIperf3(out []byte) (IperfReport, error) {
	var doc struct {
		Error     string `json:"error"`
		Intervals []struct {
			Sum struct {
				Bytes   int64 `json:"bytes"`
				Omitted bool  `json:"omitted"`
			} `json:"sum"`
		} `json:"intervals"`
		End struct {
			SumSent struct {
				Seconds       float64 `json:"seconds"`
				BitsPerSecond float64 `json:"bits_per_second"`
				Retransmits   int64   `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Seconds       float64 `json:"seconds"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return IperfReport{}, fmt.Errorf("iperf3 JSON: %w: %s", err, firstLines(string(out), 3))
	}
	if doc.Error != "" {
		return IperfReport{}, errors.New("iperf3: " + doc.Error)
	}
	r := IperfReport{
		SentBitsPerSec:     doc.End.SumSent.BitsPerSecond,
		ReceivedBitsPerSec: doc.End.SumReceived.BitsPerSecond,
		Retransmits:        doc.End.SumSent.Retransmits,
		Seconds:            doc.End.SumReceived.Seconds,
	}
	for _, iv := range doc.Intervals {
		if iv.Sum.Omitted {
			continue
		}
		r.Intervals++
		if iv.Sum.Bytes == 0 {
			r.StalledIntervals++
		}
	}
	if r.StalledIntervals > 0 {
		return r, fmt.Errorf("transfer stalled: %d of %d one-second intervals moved no data (%.2f Gbit/s on average)",
			r.StalledIntervals, r.Intervals, r.ReceivedBitsPerSec/1e9)
	}
	if r.ReceivedBitsPerSec <= 0 {
		return r, errors.New("iperf3 report has no received throughput")
	}
	return r, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

// ParseGoBench reads the result line of benchmark name from `go test -bench`
// output ("BenchmarkX-2  1  123 ns/op  2.49 auto-s …") and returns its
// metrics by unit, ns/op included.
func ParseGoBench(out, name string) (map[string]float64, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with the name
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q: %w", name, f[i], err)
			}
			m[f[i+1]] = v
		}
		return m, nil
	}
	return nil, fmt.Errorf("no result line for %s in: %s", name, firstLines(out, 4))
}

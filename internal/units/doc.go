// Package units holds the value types every configuration section shares:
// durations ("5s", "250ms", bare seconds, "indefinite"), byte sizes ("64KiB",
// "1MiB", bytes) and rates ("100Mbps", "12MB/s", bytes per second), with their
// YAML decoding.
//
// It exists so that packages the config package imports (profile/tcp) can use
// the same types without an import cycle; package config re-exports them as
// config.Duration, config.Size, config.Indefinite, config.ParseDuration and
// config.ParseSize.
//
// It owns only parsing and printing: no defaults, no validation of ranges
// (that is the job of whoever uses the value), no I/O.
//
// F5 equivalent: none (tmsh takes bare numbers in per-field units); HAProxy's
// time and size suffixes ("5s", "16k") are the closest relative.
package units

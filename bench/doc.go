// Package bench is Fulcrum's side-by-side benchmark suite: it measures Fulcrum
// beside HAProxy, nginx and Caddy — and beside a client talking straight to
// the backend — in the same run, on the same machine, with the same load
// generator, and reports medians over several rounds with every figure's
// ratio to HAProxy and to direct.
//
// The package holds what can be tested without the tools installed: parsers
// for wrk's text report and iperf3's JSON report, the result model with
// medians and ratios, the Markdown report, the PNG chart, and the check of the
// project's performance targets. The command bench/cmd/benchrun starts and
// stops the processes and drives the scenarios; bench/run (bash) installs the
// Debian packages and builds Fulcrum first. Configurations of every program
// under test are templates in bench/configs.
//
// It must not touch Fulcrum's code or defaults: Fulcrum is benchmarked as a
// user gets it (its default profiles), built from the working tree. It runs
// nothing in CI except the unit tests of this package.
//
// Equivalents: HAProxy's and F5's published sizing guides are measured the same
// way (wrk/iperf3 on loopback or a back-to-back lab); this suite is the
// reproducible, same-run version of those numbers.
package bench

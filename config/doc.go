// Package config reads, completes and checks a Fulcrum configuration file.
//
// It owns the YAML schema (model.go, units.go), the defaults every field gets
// when the operator leaves it out, the built-in objects that exist without
// being declared (monitors tcp/http/https/udp, persistence profiles
// source_addr/cookie_insert/cookie, the http profile and the tcp profile), and
// validation. Validation reports every problem at once, each with the file,
// the line, the object path ("pools.web.members[1].address") and what to do
// about it, so `fulcrum check` is useful on the first run.
//
// After a successful Parse or Load every field the engine reads is filled in:
// the engine never has to tell "not written" from "zero". Relative file paths
// (certificates, keys, CA bundles, the token file, the access log) are made
// absolute against the configuration file's directory.
//
// This package must not use the data plane's runtime (virtual, pool,
// monitor, persist, api): it only describes and checks intent; compiling it
// into a running plan is the engine's job. It does call the grammars those
// packages own, so that each grammar has one definition (CoreDNS's plugin
// setup is the model: the subsystem parses its own syntax and returns a
// typed error; config adds the file and line): persist.ParseKey and
// ParseUniversalKey (hash_key, universal key), monitor.ParseDestination,
// profile/ssl.ParseVersion (min_version) and pool.MaxRatio (member ratio). It opens files only to check them
// (certificates, keys, CA bundles, the token file) and never writes.
//
// F5 equivalent: the bigip.conf / tmsh object model and the configuration
// validation `tmsh load sys config verify` performs.
package config

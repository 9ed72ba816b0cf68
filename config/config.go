package config

// Line returns the source line where the object at path is written
// ("virtuals.vs_web", "pools.web.members[1].address"), or 0 when the path
// is unknown (built-in objects, defaults, input that did not come from YAML).
func (c *Config) Line(path string) int {
	return c.lines[path]
}

// VirtualNames returns the names of the virtuals, sorted.
func (c *Config) VirtualNames() []string { return sortedKeys(c.Virtuals) }

// PoolNames returns the names of the pools, sorted.
func (c *Config) PoolNames() []string { return sortedKeys(c.Pools) }

// MonitorNames returns the names of the monitors (built-ins included), sorted.
func (c *Config) MonitorNames() []string { return sortedKeys(c.Monitors) }

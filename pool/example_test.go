package pool_test

import (
	"fmt"
	"net/netip"

	"github.com/fulcrum-adc/fulcrum/pool"
)

func Example() {
	p := pool.New(pool.Config{
		Name:   "web",
		Method: pool.MethodRatio,
		Members: []pool.MemberConfig{
			{Addr: netip.MustParseAddrPort("192.0.2.10:80"), Ratio: 1},
			{Addr: netip.MustParseAddrPort("192.0.2.11:80"), Ratio: 2},
		},
	}, nil, nil)

	for range 3 {
		m, err := p.Pick(pool.Hint{})
		if err != nil {
			fmt.Println("no member:", err)
			return
		}
		fmt.Println(m)
		m.Release() // when the connection closes
	}
	// Output:
	// 192.0.2.11:80
	// 192.0.2.10:80
	// 192.0.2.11:80
}

func ExampleMember_SetState() {
	p := pool.New(pool.Config{
		Name:    "web",
		Members: []pool.MemberConfig{{Addr: netip.MustParseAddrPort("192.0.2.10:80")}},
	}, nil, nil)
	m := p.Members()[0]

	m.SetState(pool.Disabled, "maintenance window")
	fmt.Println(m.Available(), m.PersistOK())
	_, err := p.Pick(pool.Hint{})
	fmt.Println(err)
	// Output:
	// false true
	// pool: no member available
}

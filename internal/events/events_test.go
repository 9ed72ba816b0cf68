package events

import "testing"

func TestHubDeliversDropsAndCloses(t *testing.T) {
	var h Hub[int]
	if h.Active() {
		t.Fatal("active with no subscriber")
	}
	h.Publish(Created, 1) // nobody listens: dropped silently
	s := h.Subscribe(2)
	if !h.Active() {
		t.Fatal("not active with a subscriber")
	}
	h.Publish(Created, 1)
	h.Publish(Updated, 2)
	h.Publish(Expired, 3) // queue of 2 is full: lost, counted
	if ev := <-s.C; ev.Kind != Created || ev.Record != 1 {
		t.Errorf("first event %+v", ev)
	}
	if ev := <-s.C; ev.Kind != Updated || ev.Record != 2 {
		t.Errorf("second event %+v", ev)
	}
	if s.Dropped() != 1 {
		t.Errorf("dropped = %d, want 1", s.Dropped())
	}
	s.Close()
	if _, ok := <-s.C; ok {
		t.Error("channel open after Close")
	}
	if h.Active() {
		t.Error("active after the only subscriber closed")
	}
	h.Publish(Created, 4) // must not panic on a closed subscriber
	if Created.String() != "created" || Kind(9).String() != "unknown" {
		t.Error("Kind strings")
	}
}

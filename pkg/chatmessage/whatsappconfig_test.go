package chatmessage

import "testing"

func TestOptOutKeywords(t *testing.T) {
	def := ParseOptOut(map[string]any{})
	for text, want := range map[string]string{"STOP": "stop", " stop. ": "stop", "Unsubscribe!": "stop", "start": "start", "stop please": "", "": "", "Stopp": ""} {
		stop, _, ok := def.Choice(text)
		got := ""
		if ok && stop {
			got = "stop"
		} else if ok {
			got = "start"
		}
		if got != want {
			t.Errorf("default keywords, %q: %q, want %q", text, got, want)
		}
	}
	lease := ParseOptOut(map[string]any{
		"optOutKeywords": map[string]any{"de": []any{"Stopp", "Abmelden"}, "fr": []any{"arrêt"}},
		"optInKeywords":  []any{"Weiter", 7},
		"optOutPolicy":   "all",
	})
	if stop, k, ok := lease.Choice("stopp"); !stop || !ok || k != "STOPP" {
		t.Errorf("lease keyword stopp: %v %q %v", stop, k, ok)
	}
	if stop, _, ok := lease.Choice("ARRÊT"); !stop || !ok {
		t.Error("lease keyword ARRÊT not matched")
	}
	if _, _, ok := lease.Choice("STOP"); ok {
		t.Error("the default STOP applies though the lease names its own")
	}
	if stop, _, ok := lease.Choice("weiter"); stop || !ok {
		t.Error("lease start keyword not matched")
	}
	if lease.Policy != OptOutAll || def.Policy != OptOutMarketing {
		t.Errorf("policies %q %q", lease.Policy, def.Policy)
	}
}

package stack

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric is the sum of the named metric's samples whose labels include
// labels, as the named service (Ingest, Sender, Recorder or another
// RecorderName) serves them now.
func (s *Stack) Metric(ctx context.Context, service, name string, labels map[string]string) (float64, error) {
	urls := map[string]string{Ingest: s.IngestOpsURL, Sender: s.SenderURL}
	for i, u := range s.RecorderURLs {
		urls[RecorderName(i)] = u
	}
	base := urls[service]
	if base == "" {
		return 0, fmt.Errorf("no metrics for %q", service)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", service, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s metrics: %s", service, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", service, err)
	}
	var sum float64
	for _, m := range families[name].GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match < len(labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum, nil
}

package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/visn/wadispatch/tools/stack"
)

// serviceCPU is the CPU seconds of the services (not the emulator).
func (r Row) serviceCPU() float64 {
	var s float64
	for _, p := range r.Procs {
		if p.Name != stack.FirestoreEmulator {
			s += p.CPU
		}
	}
	return s
}

// PrintTable writes one line per system and rate.
func PrintTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tRATE/S\tMSGS\tFINAL\tSENT\tE2E MSG/S\tCALL P50\tCALL P99\tRECORDED P50\tRECORDED P99\tFIRESTORE RPC/MSG\tSERVICE CPU MS/MSG\tCPU S BY PROCESS\tPEAK RSS MB\tCLAIMS BY RECORDER\tAUDIT")
	for _, r := range rows {
		var cpu, rss []string
		for _, p := range r.Procs {
			cpu = append(cpu, fmt.Sprintf("%s=%.2f", short(p.Name), p.CPU))
			rss = append(rss, fmt.Sprintf("%s=%.0f", short(p.Name), p.PeakMB))
		}
		claims := "-"
		if len(r.Claims) > 0 {
			var parts []string
			for _, c := range r.Claims {
				parts = append(parts, fmt.Sprintf("%s=%.0f", c.Name, c.Claims))
			}
			claims = strings.Join(parts, " ")
		}
		audit := "ok"
		if r.Violations > 0 {
			audit = fmt.Sprintf("%d violations", r.Violations)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n",
			r.System, r.Rate, r.Messages, r.Final, r.Sent, r.Throughput,
			ms(r.CallP50), ms(r.CallP99), ms(r.RecordedP50), ms(r.RecordedP99),
			r.RPCs, 1000*r.serviceCPU()/float64(max(r.Messages, 1)), strings.Join(cpu, " "), strings.Join(rss, " "), claims, audit)
	}
	return tw.Flush()
}

// PrintMethods writes the Firestore calls per message by method.
func PrintMethods(w io.Writer, rows []Row) {
	for _, r := range rows {
		fmt.Fprintf(w, "  %-14s %4d/s  %s\n", r.System, r.Rate, r.RPCMethods)
	}
}

// PrintComparison writes, per rate, how the baseline compares with
// wadispatch (baseline ÷ wadispatch, or the reverse for throughput, so a
// ratio above 1 favours wadispatch).
func PrintComparison(w io.Writer, wad, base []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RATE/S\tE2E MSG/S (WADISPATCH ÷ BASELINE)\tRECORDED P50 (BASELINE ÷ WADISPATCH)\tRECORDED P99 (BASELINE ÷ WADISPATCH)\tFIRESTORE RPC/MSG (BASELINE ÷ WADISPATCH)\tSERVICE CPU/MSG (BASELINE ÷ WADISPATCH)")
	for _, a := range wad {
		for _, b := range base {
			if a.Rate != b.Rate {
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", a.Rate,
				ratio(a.Throughput, b.Throughput),
				ratio(b.RecordedP50.Seconds(), a.RecordedP50.Seconds()),
				ratio(b.RecordedP99.Seconds(), a.RecordedP99.Seconds()),
				ratio(b.RPCs, a.RPCs),
				ratio(b.serviceCPU()/float64(max(b.Messages, 1)), a.serviceCPU()/float64(max(a.Messages, 1))))
		}
	}
	return tw.Flush()
}

func ratio(num, den float64) string {
	if den == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", num/den)
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}

func short(name string) string {
	if name == stack.FirestoreEmulator {
		return "emulator"
	}
	return name
}

// PrintRSS writes each row's resident memory samples, one line a sample.
func PrintRSS(w io.Writer, rows []Row) {
	for _, r := range rows {
		for _, s := range r.RSS {
			fmt.Fprintf(w, "  %-14s %4d/s  %8s ", r.System, r.Rate, s.At)
			for _, p := range s.MB {
				fmt.Fprintf(w, " %s=%.0f", p.Name, p.PeakMB)
			}
			fmt.Fprintln(w)
		}
	}
}

package stack

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
)

// DropTriggerDeliveries makes the Firestore emulator's trigger drop the
// events of the documents written from now on (drop true), as an Eventarc
// that lost them, or deliver them again (false). It is the emulator's
// test-only switch; nothing like it exists on GCP.
func (s *Stack) DropTriggerDeliveries(ctx context.Context, drop bool) error {
	verb := "resumeDeliveries"
	if drop {
		verb = "dropDeliveries"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.triggerControl+"/emulator/v1/triggers:"+verb, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("firestore emulator %s: %w", verb, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("firestore emulator %s: HTTP %d", verb, resp.StatusCode)
	}
	return nil
}

// Ctl runs wadispatchctl against the stack as its operator (the recorder
// with the operator's ID token; Pub/Sub, for deadletters, in the stack's
// project) and returns what it printed; err tells a non-zero exit, with its
// stderr.
func (s *Stack) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.opts.BinDir, "wadispatchctl"), args...)
	cmd.Env = append(os.Environ(), "WADISPATCH_RECORDER_ADDR="+s.RecorderAddr, "WADISPATCH_ID_TOKEN_FILE="+s.OperatorTokenFile,
		"PUBSUB_EMULATOR_HOST="+s.PubSubAddr, "GOOGLE_CLOUD_PROJECT="+s.opts.Project)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("wadispatchctl %v: %w: %s", args, err, errOut.String())
	}
	return out.String(), nil
}

package whatsapp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadLocalTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(file, []byte(`{"lease-a":"tok-a"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		inline, file string
		want         string
		wantErr      bool
	}{
		"inline":  {inline: `{"lease-a":"tok-a"}`, want: "tok-a"},
		"file":    {file: file, want: "tok-a"},
		"neither": {},
		"both":    {inline: `{}`, file: file, wantErr: true},
		"garbage": {inline: `{"lease-a": tok-secret}`, wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := LoadLocalTokens(tc.inline, tc.file)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "tok-secret") {
				t.Errorf("error quotes the token: %v", err)
			}
			if tc.want != "" && got["lease-a"].Reveal() != tc.want {
				t.Errorf("lease-a = %q", got["lease-a"].Reveal())
			}
		})
	}
}

// Whatever a token file holds, loading it never panics and an error never
// quotes what the file holds (it may be tokens).
func FuzzLoadLocalTokens(f *testing.F) {
	f.Add([]byte(`{"lease-a":"tok-a"}`))
	f.Add([]byte(`{"lease-a": tok-secret-value}`))
	f.Add([]byte(`["tok-secret-value"]`))
	f.Add([]byte{0xff, 0xfe})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		file := filepath.Join(dir, "tokens.json")
		if err := os.WriteFile(file, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadLocalTokens("", file); err != nil && len(content) >= 8 && strings.Contains(err.Error(), string(content)) {
			t.Fatalf("the error quotes the file: %v", err)
		}
	})
}

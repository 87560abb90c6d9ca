package chartcheck

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"
)

// koBin is the pinned ko the Makefile installs ($KO overrides).
func koBin(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("KO"); k != "" {
		return k
	}
	k, err := filepath.Abs(filepath.Join(repoRoot, ".tools/bin/ko"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("ko not installed at %s: run `make chart-check` (it installs the pinned ko)", k)
	}
	return k
}

// nonrootUser is the user distroless's nonroot images run as, in their
// config; ko keeps the base image's.
const nonrootUser = "65532"

// The images ko builds from .ko.yaml, offline: ko builds ingest on a
// two-platform stand-in for distroless static nonroot, served with the
// result by a registry in this process, in a copy of the repository (a git
// repository of its own, so a commit is a change too). The result is an
// image index for linux/amd64 and linux/arm64 whose images run ingest,
// static, for their architecture, as the base's non-root user; building
// again gives the same digest, and so does editing and committing files
// outside ingest's package graph; a change inside it gives another.
// Digests are compared within a run only: ko records the base image's name
// in the manifests, and here it carries the registry's ephemeral port.
func TestKoImages(t *testing.T) {
	ko := koBin(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := pushBase(t, host+"/distroless/static-debian12:nonroot")

	src := copyRepo(t)
	git(t, src, "init", "-q")
	commit := func(msg string) {
		git(t, src, "add", "-A")
		git(t, src, "-c", "user.name=chartcheck", "-c", "user.email=chartcheck@invalid", "commit", "-q", "--allow-empty", "-m", msg)
	}
	commit("copy")
	build := func() name.Digest {
		t.Helper()
		start := time.Now()
		cmd := exec.Command(ko, "build", "--bare", "--sbom=none", "./services/ingest")
		cmd.Dir = src
		// Without the Makefile's GOFLAGS: .ko.yaml alone must keep the VCS
		// stamp out, as it must under skaffold.
		env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "GOFLAGS=") })
		cmd.Env = append(env, "KO_DOCKER_REPO="+host+"/wadispatch-ingest", "KO_DEFAULTBASEIMAGE="+base.String())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("ko build: %v\n%s", err, stderr.String())
		}
		ref, err := name.NewDigest(strings.TrimSpace(stdout.String()))
		if err != nil {
			t.Fatalf("ko build printed %q: %v", stdout.String(), err)
		}
		t.Logf("ko build ./services/ingest: %s in %s", ref.DigestStr(), time.Since(start).Round(time.Second))
		return ref
	}

	first := build()
	checkKoIndex(t, first, base, src)
	if again := build(); again.DigestStr() != first.DigestStr() {
		t.Errorf("building again gave %s, then %s: the build is not reproducible", first.DigestStr(), again.DigestStr())
	}

	for file, text := range map[string]string{
		"README.md":                            "\nAn edit of the README.\n",
		"charts/wadispatch/values.yaml":        "\n# An edit of the chart.\n",
		"tools/cmd/firestore-emulator/main.go": "\n// An edit of a dev tool.\n",
		"services/sender/main.go":              "\n// An edit of another service.\n",
	} {
		appendFile(t, filepath.Join(src, file), text)
	}
	commit("edits outside ingest")
	if outside := build(); outside.DigestStr() != first.DigestStr() {
		t.Errorf("edits and a commit outside ingest's package graph changed its digest from %s to %s", first.DigestStr(), outside.DigestStr())
	}

	if err := os.WriteFile(filepath.Join(src, "services/ingest/changed.go"), []byte("package main\n\nfunc init() { println(\"changed\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if inside := build(); inside.DigestStr() == first.DigestStr() {
		t.Errorf("a change to ingest's main package left its digest %s", first.DigestStr())
	}
}

// checkKoIndex checks the index ko pushed: one image per platform, on its
// platform's base image, running the static binary for that platform as
// the non-root user the chart's pods run as.
func checkKoIndex(t *testing.T, ref name.Digest, base name.Digest, src string) {
	t.Helper()
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("%s is not an image index: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	baseIdx, err := remote.Index(base)
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var platforms []string
	for _, desc := range im.Manifests {
		if desc.Platform == nil {
			t.Errorf("%s: manifest %s has no platform", ref, desc.Digest)
			continue
		}
		arch := desc.Platform.Architecture
		platforms = append(platforms, desc.Platform.OS+"/"+arch)
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != nonrootUser || cf.OS != "linux" || cf.Architecture != arch {
			t.Errorf("%s: config user %q os %q arch %q, want user %s on %s", arch, cf.Config.User, cf.OS, cf.Architecture, nonrootUser, desc.Platform.OS+"/"+arch)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/ko-app/ingest"}) {
			t.Errorf("%s: entrypoint %q, want ko's /ko-app/ingest", arch, cf.Config.Entrypoint)
		}
		checkOnBase(t, arch, img, baseIdx, *desc.Platform)
		bin := extractFile(t, img, "ko-app/ingest")
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: /ko-app/ingest: %v", arch, err)
		}
		if f.Machine != machines[arch] {
			t.Errorf("%s: /ko-app/ingest is built for %s", arch, f.Machine)
		}
		f.Close()
		checkStaticELF(t, bin, src)
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("%s: platforms %q, want linux/amd64 and linux/arm64", ref, platforms)
	}

	var values struct {
		PodSecurity struct {
			RunAsUser int64 `json:"runAsUser"`
		} `json:"podSecurity"`
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(values.PodSecurity.RunAsUser) != nonrootUser {
		t.Errorf("the chart runs pods as %d, the images as %s", values.PodSecurity.RunAsUser, nonrootUser)
	}
}

// checkOnBase checks img's first layers are those of the base image of its
// platform.
func checkOnBase(t *testing.T, arch string, img v1.Image, baseIdx v1.ImageIndex, p v1.Platform) {
	t.Helper()
	bm, err := baseIdx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(bm.Manifests, func(d v1.Descriptor) bool { return d.Platform != nil && d.Platform.Equals(p) })
	if i < 0 {
		t.Fatalf("the base has no %s image", arch)
	}
	baseImg, err := baseIdx.Image(bm.Manifests[i].Digest)
	if err != nil {
		t.Fatal(err)
	}
	want, err := layerDigests(baseImg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := layerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) <= len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("%s: layers %q do not start with the base's %q", arch, got, want)
	}
}

func layerDigests(img v1.Image) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	var ds []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		ds = append(ds, d.String())
	}
	return ds, nil
}

// pushBase pushes a stand-in for distroless static nonroot to ref: an index
// of a linux/amd64 and a linux/arm64 image, each a layer with the nonroot
// user's passwd entry and a config that runs as it, as distroless's do.
func pushBase(t *testing.T, ref string) name.Digest {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	passwd := []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
	if err := tw.WriteHeader(&tar.Header{Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(passwd); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.ImageIndex = empty.Index
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.User = nonrootUser
		cf.Config.WorkingDir = "/home/nonroot"
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(d.String())
}

// extractFile writes the file at path of img's filesystem to a temporary
// file and returns its name.
func extractFile(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s in the image", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") != path {
			continue
		}
		out := filepath.Join(t.TempDir(), filepath.Base(path))
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
}

// copyRepo copies the repository's sources (not its git data, installed
// tools or build output) to a temporary directory, symbolic links as links.
func copyRepo(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	skip := map[string]bool{".git": true, ".tools": true, "bin": true, ".run": true}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel != "." && filepath.Dir(rel) == "." && skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy the repository: %v", err)
	}
	return dst
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

package auth_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/pkg/testinfra/localissuer"
)

const audience = "wadispatch-recorder"

func startIssuer(t *testing.T) *localissuer.Issuer {
	t.Helper()
	iss, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

func verifier(t *testing.T, issuers ...*localissuer.Issuer) *auth.Verifier {
	t.Helper()
	var trust []string
	for _, i := range issuers {
		trust = append(trust, i.Trust())
	}
	parsed, err := auth.ParseIssuers(strings.Join(trust, ","))
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), audience, parsed)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mint(t *testing.T, iss *localissuer.Issuer, email, aud string, ttl time.Duration) string {
	t.Helper()
	tok, err := iss.Mint(email, aud, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerify(t *testing.T) {
	trusted, stranger := startIssuer(t), startIssuer(t)
	v := verifier(t, trusted)
	ctx := context.Background()

	id, err := v.Verify(ctx, mint(t, trusted, "sender@p.iam.gserviceaccount.com", audience, time.Hour))
	if err != nil || id.Name() != "sender@p.iam.gserviceaccount.com" || id.Issuer != trusted.URL {
		t.Fatalf("a good token: %+v, %v", id, err)
	}
	good := mint(t, trusted, "sender@p.iam.gserviceaccount.com", audience, time.Hour)
	for name, raw := range map[string]string{
		"another audience":   mint(t, trusted, "sender@p.iam.gserviceaccount.com", "some-other-service", time.Hour),
		"expired":            mint(t, trusted, "sender@p.iam.gserviceaccount.com", audience, -2*time.Minute),
		"untrusted issuer":   mint(t, stranger, "sender@p.iam.gserviceaccount.com", audience, time.Hour),
		"not a JWT":          "hello",
		"signature tampered": good[:len(good)-4] + "AAAA",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(ctx, raw)
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("err %v, want ErrUnauthenticated", err)
			}
			if len(raw) > 20 && strings.Contains(err.Error(), raw) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

// Through a real gRPC server: a public method needs no credential, a
// method is called only by the callers its policy names, and a method the
// policy does not name is closed to everyone.
func TestInterceptorAppliesThePolicy(t *testing.T) {
	iss := startIssuer(t)
	logs := &logtest.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	policy := auth.NewPolicy().
		Public("/grpc.health.v1.Health/Check").
		Allow([]string{"operator@p.iam.gserviceaccount.com"}, "/grpc.health.v1.Health/List")
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(auth.UnaryServerInterceptor(verifier(t, iss), policy, logrus.NewEntry(log))),
		grpc.StreamInterceptor(auth.StreamServerInterceptor(verifier(t, iss), policy, logrus.NewEntry(log))),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	call := func(token string) (codes.Code, error) {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if token != "" {
			file := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			ts, err := auth.NewTokenSource(context.Background(), audience, file)
			if err != nil {
				t.Fatal(err)
			}
			opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPC(ts)))
		}
		conn, err := grpc.NewClient(ln.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = healthpb.NewHealthClient(conn).List(context.Background(), &healthpb.HealthListRequest{})
		return status.Code(err), err
	}
	operator := mint(t, iss, "operator@p.iam.gserviceaccount.com", audience, time.Hour)
	sender := mint(t, iss, "sender@p.iam.gserviceaccount.com", audience, time.Hour)
	if code, err := call(operator); code != codes.OK {
		t.Errorf("operator: %v", err)
	}
	if code, _ := call(sender); code != codes.PermissionDenied {
		t.Errorf("sender calling an operator method: %s, want PermissionDenied", code)
	}
	if code, _ := call(""); code != codes.Unauthenticated {
		t.Errorf("no credential: %s, want Unauthenticated", code)
	}
	if !strings.Contains(logs.String(), `"caller":"sender@p.iam.gserviceaccount.com"`) {
		t.Errorf("the refusal is not logged with the caller:\n%s", logs.String())
	}

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("public health check without a credential: %v", err)
	}
	stream, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Watch, which no policy names, without a credential: %v, want Unauthenticated", err)
	}
}

// Whatever a caller presents, verification never panics, refuses with
// ErrUnauthenticated and never quotes the credential.
func FuzzVerify(f *testing.F) {
	iss, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = iss.Close() })
	trust, err := auth.ParseIssuers(iss.Trust())
	if err != nil {
		f.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), audience, trust)
	if err != nil {
		f.Fatal(err)
	}
	good, err := iss.Mint("sender@p.iam.gserviceaccount.com", audience, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err == nil {
			if raw != good || id.Name() == "" {
				t.Fatalf("accepted %q as %+v", raw, id)
			}
			return
		}
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
		}
		if len(raw) >= 16 && strings.Contains(err.Error(), raw) {
			t.Fatalf("the error quotes the credential: %v", err)
		}
	})
}

// A token verified once is taken from memory on the next calls, and only
// until it expires.
func TestVerifiedTokensAreRememberedUntilTheyExpire(t *testing.T) {
	iss := startIssuer(t)
	v := verifier(t, iss)
	ctx := context.Background()
	var ahead time.Duration
	auth.SetClock(v, func() time.Time { return time.Now().Add(ahead) })
	raw := mint(t, iss, "sender@p.iam.gserviceaccount.com", audience, time.Minute)
	for range 3 {
		if id, err := v.Verify(ctx, raw); err != nil || id.Name() != "sender@p.iam.gserviceaccount.com" {
			t.Fatalf("a good token: %+v, %v", id, err)
		}
	}
	ahead = 2 * time.Minute
	if _, err := v.Verify(ctx, raw); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("the remembered token after its expiry: %v, want ErrUnauthenticated", err)
	}
}

// BenchmarkVerify is the recorder's cost of authenticating one call with
// the sender's token (the same token on every call, as the sender sends).
func BenchmarkVerify(b *testing.B) {
	iss, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	parsed, err := auth.ParseIssuers(iss.Trust())
	if err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), audience, parsed)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := iss.Mint("sender@p.iam.gserviceaccount.com", audience, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

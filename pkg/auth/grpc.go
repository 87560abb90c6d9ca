package auth

import (
	"context"
	"errors"
	"strings"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/logging"
)

// Policy says who may call each gRPC method (its full name,
// /package.Service/Method). A method it does not name is refused to
// everyone, so a method added to the API is closed until a policy opens it.
type Policy struct {
	public  map[string]bool
	callers map[string]map[string]bool
}

// NewPolicy is a policy that admits nobody yet.
func NewPolicy() *Policy {
	return &Policy{public: map[string]bool{}, callers: map[string]map[string]bool{}}
}

// Public admits any caller, with or without a credential (health checks:
// the kubelet presents none).
func (p *Policy) Public(methods ...string) *Policy {
	for _, m := range methods {
		p.public[m] = true
	}
	return p
}

// Allow admits the named callers (Identity.Name) to methods.
func (p *Policy) Allow(names []string, methods ...string) *Policy {
	for _, m := range methods {
		if p.callers[m] == nil {
			p.callers[m] = map[string]bool{}
		}
		for _, n := range names {
			p.callers[m][n] = true
		}
	}
	return p
}

type identityKey struct{}

// WithIdentity is ctx of a call made by id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext is the verified caller of the call ctx belongs to.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// UnaryServerInterceptor verifies each call's bearer credential and applies
// the policy before the method runs. A refusal is logged with the caller
// (or why there is none) and answered UNAUTHENTICATED or PERMISSION_DENIED.
func UnaryServerInterceptor(v *Verifier, p *Policy, log *logrus.Entry) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if p.public[info.FullMethod] {
			return handler(ctx, req)
		}
		ctx, err := authorize(ctx, v, p, info.FullMethod, log)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming methods
// (the health service's Watch, reflection).
func StreamServerInterceptor(v *Verifier, p *Policy, log *logrus.Entry) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if p.public[info.FullMethod] {
			return handler(srv, ss)
		}
		if _, err := authorize(ss.Context(), v, p, info.FullMethod, log); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func authorize(ctx context.Context, v *Verifier, p *Policy, method string, log *logrus.Entry) (context.Context, error) {
	entry := logging.WithContext(ctx, log).WithField("method", method)
	raw, err := bearer(ctx)
	if err == nil {
		var id Identity
		if id, err = v.Verify(ctx, raw); err == nil {
			if !p.callers[method][id.Name()] {
				entry.WithField("caller", id.Name()).Warn("call refused: the caller may not call this method")
				return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id.Name(), method)
			}
			return WithIdentity(ctx, id), nil
		}
	}
	entry.WithError(err).Warn("call refused: no valid credential")
	return nil, status.Error(codes.Unauthenticated, err.Error())
}

func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", errors.New("unauthenticated: one authorization header with a bearer ID token is required")
	}
	raw, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || raw == "" {
		return "", errors.New("unauthenticated: the authorization header is not a bearer token")
	}
	return raw, nil
}

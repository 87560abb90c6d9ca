package firestoreemu

import (
	"context"
	"testing"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// StartForTest starts an emulator for a test and closes it when the test
// ends. Point clients at it with t.Setenv("FIRESTORE_EMULATOR_HOST",
// srv.Addr()), or, for parallel tests, with srv.ClientOptions().
func StartForTest(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	srv, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start firestore emulator: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close firestore emulator: %v", err)
		}
	})
	return srv
}

// ClientOptions connect a cloud.google.com/go/firestore client to this
// emulator without FIRESTORE_EMULATOR_HOST.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.Addr()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// IndexesForTest parses a firestore.indexes.json file as database's index
// configuration, for Options.Indexes in tests that run with the deployed
// indexes.
func IndexesForTest(tb testing.TB, database string, data []byte) map[string]*IndexConfig {
	tb.Helper()
	cfg, err := ParseIndexConfig(data)
	if err != nil {
		tb.Fatalf("index configuration of database %s: %v", database, err)
	}
	return map[string]*IndexConfig{database: cfg}
}

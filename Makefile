# wadispatch: every tool the targets need is installed here, at pinned
# versions, into .tools/bin through the Go module proxy.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
export GOFLAGS := -buildvcs=false

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
HELM_VERSION               := v3.22.0
# The ko skaffold embeds builds the images; this one is make chart-check's,
# which builds an image offline and checks it.
KO_VERSION                 := v0.19.1

.PHONY: all build test test-gcloud lint proto proto-tools chart-check chart-schemas demo run bench

all: build

$(TOOLS)/buf:
	GOBIN=$(TOOLS) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# ko, like helm, under its version.
KO := $(TOOLS)/ko-$(KO_VERSION)
$(KO):
	GOBIN=$(TOOLS)/ko-install go install github.com/google/ko@$(KO_VERSION)
	mv $(TOOLS)/ko-install/ko $@ && rmdir $(TOOLS)/ko-install
	ln -sf $(notdir $@) $(TOOLS)/ko

# helm is installed under its version, so a version bump installs anew;
# .tools/bin/helm points at the pinned one.
HELM := $(TOOLS)/helm-$(HELM_VERSION)
$(HELM):
	GOBIN=$(TOOLS)/helm-install go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/helm-install/helm $@ && rmdir $(TOOLS)/helm-install
	ln -sf $(notdir $@) $(TOOLS)/helm

proto-tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc

## proto: regenerate the Go code of proto/ (committed; a test checks it is current)
proto: proto-tools
	cd proto && buf lint && buf generate

## build: every service, internal tool and dev tool into bin/ (the dev tools
## are their own module, tools/, so the product module lists only the product)
build:
	go build -o bin/ ./services/... ./cmd/...
	cd tools && go build -o ../bin/ ./cmd/...

## test: the whole suite, with the emulators and servers it needs started by the tests themselves
test: proto-tools chart-check
	go test -count=1 -timeout 12m ./...
	cd tools && go vet ./... && go test -count=1 -timeout 12m ./...
	$(MAKE) --no-print-directory test-gcloud

## test-gcloud: the Firestore-backed integration suites and the end-to-end
## tests again, on Google's Firestore and Pub/Sub emulators (the gcloud SDK's,
## Java 17); one line saying why they are skipped where those are not installed
GCLOUD_PACKAGES := ./pkg/testinfra/gcloudemu ./services/recorder/internal/app ./services/ingest/internal/adapters ./cmd/wadispatchctl
GCLOUD_STACK_TESTS := TestDemoOutcomesAreAllExpected|TestSeedFlowFieldByField|TestReconcilerFindsLostEvents|TestStatusWebhooksReorderedAndDuplicated|TestDriverReplyRecordedAndNotSent|TestUnknownResolvesItselfWhenWhatsAppSaysSo
test-gcloud:
	@if ! found=$$(cd tools && go run ./cmd/wadispatch-stack gcloud); then echo "test-gcloud: SKIPPED: $$found"; exit 0; fi; \
	echo "test-gcloud: $$found"; \
	set -x; \
	WADISPATCH_EMULATORS=gcloud go test -count=1 -timeout 10m $(GCLOUD_PACKAGES) && \
	cd tools && WADISPATCH_EMULATORS=gcloud go test -count=1 -timeout 10m -run '^($(GCLOUD_STACK_TESTS))$$' ./stack

## chart-check: the deployment side, offline: helm lint and template of
## charts/wadispatch (default and ci/ values); every manifest validated by
## kubeconform (strict: unknown fields are errors) against the vendored
## schemas of Kubernetes, Gateway API, Config Connector and Google Managed
## Prometheus, and skaffold.yaml against skaffold's published v4beta14 schema
## (charts/chartcheck/schemas); then the project's own rules: the chart against
## topology.yaml, docs/metrics.md and the services, skaffold.yaml's images,
## values and port-forwards, .ko.yaml, every image's binary built as ko builds
## it (static), and one image built by ko into an in-process registry
## (platforms, user, same digest for the same package graph) (charts/chartcheck,
## its own module so the Kubernetes and registry packages stay out of the
## main build)
chart-check: $(HELM) $(KO)
	cd charts/chartcheck && go vet ./... && HELM=$(HELM) KO=$(KO) go test -count=1 -timeout 15m ./...

## chart-schemas: regenerate charts/chartcheck/schemas (committed): Kubernetes
## and Gateway API from chartcheck's module versions; Config Connector, GMP and
## skaffold too when KCC_DIR, GMP_DIR and SKAFFOLD_DIR name checkouts of
## their repositories (schemas/README.md: which tags)
chart-schemas:
	cd charts/chartcheck && go run ./internal/schemagen \
		$(if $(KCC_DIR),-kcc $(abspath $(KCC_DIR))) \
		$(if $(GMP_DIR),-gmp $(abspath $(GMP_DIR))) \
		$(if $(SKAFFOLD_DIR),-skaffold $(abspath $(SKAFFOLD_DIR)))

## lint: go vet and staticcheck
lint: $(TOOLS)/staticcheck
	go vet ./...
	staticcheck ./...
	cd tools && go vet ./... && staticcheck ./...

## demo: run the whole flow locally once, as the V-Customer, and print what happened
demo: build
	bin/wadispatch-stack --bin bin --logs .run/logs demo

## run: the local stack in the foreground, for trying it by hand (Ctrl-C stops it)
run: build
	bin/wadispatch-stack --bin bin --logs .run/logs run

## bench: benchmarks of every package, with figures; then the load harness
## over the real processes at 25-200 messages/s, against the seed design
bench: build
	go test -run '^$$' -bench . -benchmem ./...
	cd tools && go test -run '^$$' -bench . -benchmem ./...
	bin/wadispatch-bench --bin bin --logs .run/bench

// Package chartcheck holds the offline checks of the deployment side:
// charts/wadispatch rendered with helm and every manifest validated with
// kubeconform, strictly, against the schemas vendored in schemas/
// (Kubernetes, Gateway API, Config Connector, Google Managed Prometheus;
// internal/schemagen generates them), skaffold.yaml against skaffold's
// published schema, then the project's own rules: the security and
// operability rules every workload must follow, the chart against
// topology.yaml and docs/metrics.md, the `helm test` pod, .ko.yaml and
// skaffold.yaml against the chart, the images' binaries built as ko builds
// them (static), and an image built by ko into an in-process registry
// (platforms, user, digest stability).
//
// It is its own module so the Kubernetes API packages stay out of the main
// module's build; `make chart-check` runs it with a pinned helm.
package chartcheck

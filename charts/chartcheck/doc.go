// Package chartcheck holds the offline checks of the deployment side:
// charts/wadispatch rendered with helm and every manifest decoded strictly
// into Kubernetes API types (Config Connector kinds into local structs),
// the security and operability rules every workload must follow, the
// `helm test` pod, .ko.yaml and skaffold.yaml, the images' binaries built as
// ko builds them (static), and an image built by ko into an in-process
// registry (platforms, user, digest stability).
//
// It is its own module so the Kubernetes API packages stay out of the main
// module's build; `make chart-check` runs it with a pinned helm.
package chartcheck

package chartcheck

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Config Connector kinds the chart renders, with the fields the checks read
// (topology, IAM, Eventarc, indexes). Their shape is checked against the
// vendored v1beta1 CRDs (schemas/crds, validateManifests), not here.

// Ref is a Config Connector resource reference.
type Ref struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	External  string `json:"external,omitempty"`
}

// PubSubTopic is pubsub.cnrm.cloud.google.com/v1beta1 PubSubTopic.
type PubSubTopic struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ResourceID string `json:"resourceID,omitempty"`
	} `json:"spec"`
}

// PubSubSubscription is pubsub.cnrm.cloud.google.com/v1beta1 PubSubSubscription.
type PubSubSubscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ResourceID            string `json:"resourceID,omitempty"`
		TopicRef              Ref    `json:"topicRef"`
		AckDeadlineSeconds    int    `json:"ackDeadlineSeconds,omitempty"`
		EnableMessageOrdering bool   `json:"enableMessageOrdering,omitempty"`
		ExpirationPolicy      *struct {
			TTL string `json:"ttl"`
		} `json:"expirationPolicy,omitempty"`
		RetryPolicy *struct {
			MinimumBackoff string `json:"minimumBackoff,omitempty"`
			MaximumBackoff string `json:"maximumBackoff,omitempty"`
		} `json:"retryPolicy,omitempty"`
		DeadLetterPolicy *struct {
			DeadLetterTopicRef  Ref `json:"deadLetterTopicRef"`
			MaxDeliveryAttempts int `json:"maxDeliveryAttempts,omitempty"`
		} `json:"deadLetterPolicy,omitempty"`
		MessageRetentionDuration string `json:"messageRetentionDuration,omitempty"`
	} `json:"spec"`
}

// IAMServiceAccount is iam.cnrm.cloud.google.com/v1beta1 IAMServiceAccount.
type IAMServiceAccount struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ResourceID string `json:"resourceID,omitempty"`
	} `json:"spec"`
}

// IAMPolicyMember is iam.cnrm.cloud.google.com/v1beta1 IAMPolicyMember.
type IAMPolicyMember struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Member    string `json:"member"`
		Role      string `json:"role"`
		Condition *struct {
			Title      string `json:"title"`
			Expression string `json:"expression"`
		} `json:"condition,omitempty"`
		ResourceRef struct {
			Kind      string `json:"kind"`
			Name      string `json:"name,omitempty"`
			Namespace string `json:"namespace,omitempty"`
			External  string `json:"external,omitempty"`
		} `json:"resourceRef"`
	} `json:"spec"`
}

// EventarcTrigger is eventarc.cnrm.cloud.google.com/v1beta1 EventarcTrigger.
type EventarcTrigger struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MatchingCriteria []struct {
			Attribute string `json:"attribute"`
			Operator  string `json:"operator,omitempty"`
			Value     string `json:"value"`
		} `json:"matchingCriteria"`
		EventDataContentType string `json:"eventDataContentType,omitempty"`
		ServiceAccountRef    *Ref   `json:"serviceAccountRef,omitempty"`
		Destination          struct {
			GKE *struct {
				Namespace string `json:"namespace"`
				Service   string `json:"service"`
				Path      string `json:"path,omitempty"`
			} `json:"gke,omitempty"`
		} `json:"destination"`
	} `json:"spec"`
}

// FirestoreIndex is firestore.cnrm.cloud.google.com/v1beta1 FirestoreIndex.
type FirestoreIndex struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Database   string       `json:"database,omitempty"`
		Collection string       `json:"collection"`
		QueryScope string       `json:"queryScope,omitempty"`
		Fields     []IndexField `json:"fields"`
	} `json:"spec"`
}

// IndexField is one field of a Firestore composite index, spelt the same in
// firestore.indexes.json and in FirestoreIndex.
type IndexField struct {
	FieldPath   string `json:"fieldPath"`
	Order       string `json:"order,omitempty"`
	ArrayConfig string `json:"arrayConfig,omitempty"`
}

// StorageBucket is storage.cnrm.cloud.google.com/v1beta1 StorageBucket, as
// far as the chart uses it (Config Connector's StorageBucket reference,
// docs.cloud.google.com/config-connector/docs/reference/resource-docs/storage/storagebucket).
// Its CRD is not among the vendored schemas (they are generated from a
// checkout of k8s-config-connector, schemas/README.md), so until it is this
// struct is its schema: it is decoded strictly.
type StorageBucket struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ResourceID               string `json:"resourceID,omitempty"`
		Location                 string `json:"location,omitempty"`
		UniformBucketLevelAccess bool   `json:"uniformBucketLevelAccess,omitempty"`
		PublicAccessPrevention   string `json:"publicAccessPrevention,omitempty"`
		RetentionPolicy          *struct {
			IsLocked        bool `json:"isLocked,omitempty"`
			RetentionPeriod int  `json:"retentionPeriod"`
		} `json:"retentionPolicy,omitempty"`
		LifecycleRule []struct {
			Action struct {
				Type string `json:"type"`
			} `json:"action"`
			Condition struct {
				Age int `json:"age,omitempty"`
			} `json:"condition"`
		} `json:"lifecycleRule,omitempty"`
	} `json:"spec"`
}

// HealthCheckPolicy is GKE's networking.gke.io/v1 HealthCheckPolicy, as far
// as the chart uses it (GKE Gateway API reference). GKE publishes no CRD to
// validate it against, so this struct is its schema: it is decoded strictly.
type HealthCheckPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Default struct {
			Config struct {
				Type            string `json:"type"`
				HTTPHealthCheck struct {
					PortSpecification string `json:"portSpecification,omitempty"`
					Port              int    `json:"port,omitempty"`
					RequestPath       string `json:"requestPath,omitempty"`
				} `json:"httpHealthCheck"`
			} `json:"config"`
		} `json:"default"`
		TargetRef struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"targetRef"`
	} `json:"spec"`
}

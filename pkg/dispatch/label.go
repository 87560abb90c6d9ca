package dispatch

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Label is a proto enum value as metric labels and Pub/Sub attributes spell
// it: without its enum's prefix, in lower case (MESSAGE_TYPE_TEXT → "text",
// DECISION_IN_FLIGHT → "in_flight").
func Label(e protoreflect.Enum) string {
	v := e.Descriptor().Values().ByNumber(e.Number())
	if v == nil {
		return "unspecified"
	}
	name := string(v.Name())
	// Values are prefixed with their enum's name in upper snake case.
	if i := strings.Index(name, "_"); i >= 0 {
		prefix := upperSnake(string(e.Descriptor().Name())) + "_"
		name = strings.TrimPrefix(name, prefix)
	}
	return strings.ToLower(name)
}

func upperSnake(camel string) string {
	var b strings.Builder
	for i, r := range camel {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

package firestoreevent

import (
	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
)

// Reference is a Firestore reference value: the full resource name of the
// document it points to. It is its own type so that a reference is never
// mistaken for a string field.
type Reference string

// GeoPoint is a Firestore geographical point.
type GeoPoint struct {
	Latitude, Longitude float64
}

// Fields converts a document's fields with Plain.
func Fields(fields map[string]*firestoredata.Value) map[string]any {
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		out[k] = Plain(v)
	}
	return out
}

// Plain converts a Firestore value into a plain Go value:
//
//	null            nil
//	boolean         bool
//	integer         int64
//	double          float64
//	timestamp       time.Time (UTC)
//	string          string
//	bytes           []byte
//	reference       Reference
//	geo point       GeoPoint
//	array           []any
//	map             map[string]any
//
// A value with no type set (which Firestore never sends) is nil.
func Plain(v *firestoredata.Value) any {
	switch t := v.GetValueType().(type) {
	case *firestoredata.Value_BooleanValue:
		return t.BooleanValue
	case *firestoredata.Value_IntegerValue:
		return t.IntegerValue
	case *firestoredata.Value_DoubleValue:
		return t.DoubleValue
	case *firestoredata.Value_TimestampValue:
		return t.TimestampValue.AsTime()
	case *firestoredata.Value_StringValue:
		return t.StringValue
	case *firestoredata.Value_BytesValue:
		return t.BytesValue
	case *firestoredata.Value_ReferenceValue:
		return Reference(t.ReferenceValue)
	case *firestoredata.Value_GeoPointValue:
		return GeoPoint{Latitude: t.GeoPointValue.GetLatitude(), Longitude: t.GeoPointValue.GetLongitude()}
	case *firestoredata.Value_ArrayValue:
		vals := t.ArrayValue.GetValues()
		out := make([]any, len(vals))
		for i, e := range vals {
			out[i] = Plain(e)
		}
		return out
	case *firestoredata.Value_MapValue:
		return Fields(t.MapValue.GetFields())
	default: // null, or unset
		return nil
	}
}

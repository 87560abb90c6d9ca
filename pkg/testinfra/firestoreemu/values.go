package firestoreemu

import (
	"bytes"
	"cmp"
	"math"
	"sort"
	"strings"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Type ranks in Firestore's documented cross-type order. NaN is its own rank
// so that it sorts before every other number, as Firestore orders it.
const (
	rankNull = iota
	rankBool
	rankNaN
	rankNumber
	rankTimestamp
	rankString
	rankBytes
	rankReference
	rankGeoPoint
	rankArray
	rankMap
)

func typeRank(v *pb.Value) int {
	switch x := v.GetValueType().(type) {
	case *pb.Value_BooleanValue:
		return rankBool
	case *pb.Value_IntegerValue:
		return rankNumber
	case *pb.Value_DoubleValue:
		if math.IsNaN(x.DoubleValue) {
			return rankNaN
		}
		return rankNumber
	case *pb.Value_TimestampValue:
		return rankTimestamp
	case *pb.Value_StringValue:
		return rankString
	case *pb.Value_BytesValue:
		return rankBytes
	case *pb.Value_ReferenceValue:
		return rankReference
	case *pb.Value_GeoPointValue:
		return rankGeoPoint
	case *pb.Value_ArrayValue:
		return rankArray
	case *pb.Value_MapValue:
		return rankMap
	default:
		return rankNull
	}
}

func isNumber(v *pb.Value) bool {
	switch v.GetValueType().(type) {
	case *pb.Value_IntegerValue, *pb.Value_DoubleValue:
		return true
	}
	return false
}

// compareNumbers compares an int64 and a float64 exactly: converting a large
// int64 to float64 would lose precision and make distinct values equal.
func compareIntDouble(i int64, d float64) int {
	if d >= 9.3e18 {
		return -1
	}
	if d <= -9.3e18 {
		return 1
	}
	t := math.Trunc(d)
	ti := int64(t)
	if i < ti {
		return -1
	}
	if i > ti {
		return 1
	}
	return cmp.Compare(0, d-t)
}

func compareNumbers(a, b *pb.Value) int {
	ai, aInt := a.ValueType.(*pb.Value_IntegerValue)
	bi, bInt := b.ValueType.(*pb.Value_IntegerValue)
	switch {
	case aInt && bInt:
		return cmp.Compare(ai.IntegerValue, bi.IntegerValue)
	case aInt:
		return compareIntDouble(ai.IntegerValue, b.GetDoubleValue())
	case bInt:
		return -compareIntDouble(bi.IntegerValue, a.GetDoubleValue())
	}
	return cmp.Compare(a.GetDoubleValue(), b.GetDoubleValue())
}

// compareValues orders two values the way Firestore orders them in indexes
// and query results.
func compareValues(a, b *pb.Value) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch ra {
	case rankNull, rankNaN:
		return 0
	case rankBool:
		ab, bb := a.GetBooleanValue(), b.GetBooleanValue()
		if ab == bb {
			return 0
		}
		if !ab {
			return -1
		}
		return 1
	case rankNumber:
		return compareNumbers(a, b)
	case rankTimestamp:
		ta, tb := a.GetTimestampValue(), b.GetTimestampValue()
		if c := cmp.Compare(ta.GetSeconds(), tb.GetSeconds()); c != 0 {
			return c
		}
		return cmp.Compare(ta.GetNanos(), tb.GetNanos())
	case rankString:
		return strings.Compare(a.GetStringValue(), b.GetStringValue())
	case rankBytes:
		return bytes.Compare(a.GetBytesValue(), b.GetBytesValue())
	case rankReference:
		return compareNames(a.GetReferenceValue(), b.GetReferenceValue())
	case rankGeoPoint:
		ga, gb := a.GetGeoPointValue(), b.GetGeoPointValue()
		if c := cmp.Compare(ga.GetLatitude(), gb.GetLatitude()); c != 0 {
			return c
		}
		return cmp.Compare(ga.GetLongitude(), gb.GetLongitude())
	case rankArray:
		av, bv := a.GetArrayValue().GetValues(), b.GetArrayValue().GetValues()
		for i := 0; i < len(av) && i < len(bv); i++ {
			if c := compareValues(av[i], bv[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(av), len(bv))
	case rankMap:
		return compareMaps(a.GetMapValue().GetFields(), b.GetMapValue().GetFields())
	}
	return 0
}

func sortedKeys(m map[string]*pb.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compareMaps(a, b map[string]*pb.Value) int {
	ak, bk := sortedKeys(a), sortedKeys(b)
	for i := 0; i < len(ak) && i < len(bk); i++ {
		if c := strings.Compare(ak[i], bk[i]); c != 0 {
			return c
		}
		if c := compareValues(a[ak[i]], b[bk[i]]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ak), len(bk))
}

// compareNames orders document names segment by segment, which differs from
// plain string order when an ID contains characters below '/'.
func compareNames(a, b string) int {
	for {
		as, arest, aMore := strings.Cut(a, "/")
		bs, brest, bMore := strings.Cut(b, "/")
		if c := strings.Compare(as, bs); c != 0 {
			return c
		}
		switch {
		case !aMore && !bMore:
			return 0
		case !aMore:
			return -1
		case !bMore:
			return 1
		}
		a, b = arest, brest
	}
}

// valuesEqual is Firestore's equality for filters and array transforms:
// 1 and 1.0 are equal, NaN equals NaN.
func valuesEqual(a, b *pb.Value) bool {
	return compareValues(a, b) == 0
}

func nullValue() *pb.Value {
	return &pb.Value{ValueType: &pb.Value_NullValue{NullValue: structpb.NullValue_NULL_VALUE}}
}

func intValue(i int64) *pb.Value {
	return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: i}}
}

func doubleValue(f float64) *pb.Value {
	return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: f}}
}

func asFloat(v *pb.Value) float64 {
	if i, ok := v.ValueType.(*pb.Value_IntegerValue); ok {
		return float64(i.IntegerValue)
	}
	return v.GetDoubleValue()
}

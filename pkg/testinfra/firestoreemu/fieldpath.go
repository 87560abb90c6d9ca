package firestoreemu

import (
	"fmt"
	"strings"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"
)

// parseFieldPath splits a field path in Firestore's syntax: segments joined
// by dots, a segment quoted with backticks when it is not a simple name.
func parseFieldPath(p string) ([]string, error) {
	if p == "" {
		return nil, fmt.Errorf("empty field path")
	}
	var segs []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case quoted && c == '\\' && i+1 < len(p):
			i++
			cur.WriteByte(p[i])
		case c == '`':
			quoted = !quoted
		case !quoted && c == '.':
			if cur.Len() == 0 {
				return nil, fmt.Errorf("invalid field path %q", p)
			}
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if quoted || cur.Len() == 0 {
		return nil, fmt.Errorf("invalid field path %q", p)
	}
	return append(segs, cur.String()), nil
}

func isSimpleSegment(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func formatFieldPath(segs []string) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		if isSimpleSegment(s) {
			parts[i] = s
			continue
		}
		parts[i] = "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
	}
	return strings.Join(parts, ".")
}

func getField(fields map[string]*pb.Value, path []string) (*pb.Value, bool) {
	for i, seg := range path {
		v, ok := fields[seg]
		if !ok {
			return nil, false
		}
		if i == len(path)-1 {
			return v, true
		}
		m, ok := v.ValueType.(*pb.Value_MapValue)
		if !ok {
			return nil, false
		}
		fields = m.MapValue.GetFields()
	}
	return nil, false
}

// setField stores v at path, replacing non-map intermediate values by maps
// as Firestore does for dotted updates.
func setField(fields map[string]*pb.Value, path []string, v *pb.Value) {
	for _, seg := range path[:len(path)-1] {
		cur, ok := fields[seg]
		m, isMap := cur.GetValueType().(*pb.Value_MapValue)
		if !ok || !isMap {
			m = &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: map[string]*pb.Value{}}}
			fields[seg] = &pb.Value{ValueType: m}
		}
		if m.MapValue.Fields == nil {
			m.MapValue.Fields = map[string]*pb.Value{}
		}
		fields = m.MapValue.Fields
	}
	fields[path[len(path)-1]] = v
}

func deleteField(fields map[string]*pb.Value, path []string) {
	for _, seg := range path[:len(path)-1] {
		m, ok := fields[seg].GetValueType().(*pb.Value_MapValue)
		if !ok {
			return
		}
		fields = m.MapValue.GetFields()
	}
	delete(fields, path[len(path)-1])
}

// projectFields keeps only the given field paths, as a DocumentMask or a
// query projection does.
func projectFields(fields map[string]*pb.Value, paths [][]string) map[string]*pb.Value {
	out := map[string]*pb.Value{}
	for _, p := range paths {
		if v, ok := getField(fields, p); ok {
			setField(out, p, proto.Clone(v).(*pb.Value))
		}
	}
	return out
}

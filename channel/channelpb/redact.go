package channelpb

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"tether.dev/tether/api/v1alpha1"
)

// RedactReport masks URL credentials in r, in place: the source URL as
// v1alpha1.RedactURL does, and every other string (messages, conditions,
// paths) as v1alpha1.RedactString does. The agent calls it before a report
// leaves the cluster, and the hub again before it stores one, so a token
// in a repository URL reaches neither the hub nor its pages.
func RedactReport(r *SyncReport) {
	if r == nil {
		return
	}
	r.SourceUrl = v1alpha1.RedactURL(r.SourceUrl)
	redactStrings(r)
}

// redactStrings walks every string of m, nested messages included, so a
// field added to the protocol later is covered without a change here.
func redactStrings(m proto.Message) {
	walk(m.ProtoReflect())
}

func walk(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			mp := v.Map()
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				switch {
				case fd.MapValue().Kind() == protoreflect.StringKind:
					mp.Set(k, protoreflect.ValueOfString(v1alpha1.RedactString(mv.String())))
				case fd.MapValue().Message() != nil:
					walk(mv.Message())
				}
				return true
			})
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				switch {
				case fd.Kind() == protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString(v1alpha1.RedactString(l.Get(i).String())))
				case fd.Message() != nil:
					walk(l.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			if s := v.String(); s != "" {
				m.Set(fd, protoreflect.ValueOfString(v1alpha1.RedactString(s)))
			}
		case fd.Message() != nil:
			walk(v.Message())
		}
		return true
	})
}

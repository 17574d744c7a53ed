package channelpb

import (
	"google.golang.org/protobuf/reflect/protoreflect"
)

// RedactReport masks URL credentials in r, in place: the source URL with
// redactURL, and every other string (messages, conditions, paths, the
// ref) with redactText. Tether passes v1alpha1.RedactURL and
// v1alpha1.RedactString; they are parameters so that the protocol, and
// with it the agent's half of the channel, does not depend on the CRD's
// package. The agent's report builder (sync) calls it before a report
// leaves the cluster, and the hub again before it stores one, so a token
// in a repository URL reaches neither the hub nor its pages.
//
// Every string field is walked, nested messages included, so a field
// added to the protocol later is covered without a change here.
func RedactReport(r *SyncReport, redactURL, redactText func(string) string) {
	if r == nil {
		return
	}
	r.SourceUrl = redactURL(r.SourceUrl)
	walk(r.ProtoReflect(), redactText)
}

func walk(m protoreflect.Message, redact func(string) string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			mp := v.Map()
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				switch {
				case fd.MapValue().Kind() == protoreflect.StringKind:
					mp.Set(k, protoreflect.ValueOfString(redact(mv.String())))
				case fd.MapValue().Message() != nil:
					walk(mv.Message(), redact)
				}
				return true
			})
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				switch {
				case fd.Kind() == protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString(redact(l.Get(i).String())))
				case fd.Message() != nil:
					walk(l.Get(i).Message(), redact)
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			if s := v.String(); s != "" {
				m.Set(fd, protoreflect.ValueOfString(redact(s)))
			}
		case fd.Message() != nil:
			walk(v.Message(), redact)
		}
		return true
	})
}

package badge

import (
	"encoding/xml"
	"strings"
	"testing"
)

// texts returns the visible text elements of an SVG (not the shadows),
// failing the test when the SVG is not well-formed XML.
func texts(t *testing.T, svg []byte) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(string(svg)))
	var out []string
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("SVG is not well-formed: %v\n%s", err, svg)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "text" {
			continue
		}
		hidden := false
		for _, a := range se.Attr {
			if a.Name.Local == "aria-hidden" {
				hidden = true
			}
		}
		var s string
		if err := dec.DecodeElement(&s, &se); err != nil {
			t.Fatal(err)
		}
		if !hidden {
			out = append(out, s)
		}
	}
}

func TestSVG(t *testing.T) {
	cases := []struct {
		name  string
		badge Badge
		want  []string
		color string
	}{
		{"synced", Badge{"app", []Segment{{"synced abc1234", Green}}}, []string{"app", "synced abc1234"}, Green},
		{"drifted", Badge{"app", []Segment{{"drifted", Orange}}}, []string{"app", "drifted"}, Orange},
		{"failed", Badge{"app", []Segment{{"failed", Red}}}, []string{"app", "failed"}, Red},
		{"progressing", Badge{"app", []Segment{{"progressing", Blue}}}, []string{"app", "progressing"}, Blue},
		{"offline", Badge{"app", []Segment{{"offline", Grey}}}, []string{"app", "offline"}, Grey},
		{"escaped", Badge{`<script>alert("x")</script>`, []Segment{{"a&b", Grey}}}, []string{`<script>alert("x")</script>`, "a&b"}, Grey},
		{"bad colour", Badge{"x", []Segment{{"y", `red"/><script>`}}}, []string{"x", "y"}, Grey},
		{"several", Badge{"deployed", []Segment{{"prod: live", Green}, {"staging: failed", Red}}}, []string{"deployed", "prod: live", "staging: failed"}, Red},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svg := c.badge.SVG()
			got := texts(t, svg)
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("texts = %q, want %q", got, c.want)
			}
			if !strings.Contains(string(svg), `fill="`+c.color+`"`) {
				t.Errorf("colour %s missing:\n%s", c.color, svg)
			}
			if strings.Contains(string(svg), "<script") {
				t.Errorf("unescaped markup in SVG:\n%s", svg)
			}
		})
	}
}

func TestWidthGrowsWithText(t *testing.T) {
	short := Badge{"app", []Segment{{"failed", Red}}}.SVG()
	long := Badge{"app", []Segment{{"synced 0123456", Green}}}.SVG()
	if len(long) <= len(short) {
		t.Fatal("unexpected sizes")
	}
	if Width("synced abc1234") <= Width("failed") || Width("WWW") <= Width("iii") {
		t.Error("text widths do not follow the font's metrics")
	}
	if w := Width("synced abc1234"); w < 80 || w > 100 {
		t.Errorf("Width(synced abc1234) = %d, want about 89", w)
	}
}

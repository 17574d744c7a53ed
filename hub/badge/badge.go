// Package badge draws shields-style flat SVG badges: a grey label followed
// by one or more coloured segments. It is pure: text in, SVG out, with text
// widths computed from Verdana's metrics so the badge fits its words in
// GitLab's and GitHub's markdown. All text is XML-escaped.
package badge

import (
	"fmt"
	"math"
	"strings"
)

// Colours used by the hub's badges (shields.io's palette).
const (
	Green  = "#4c1"
	Orange = "#fe7d37"
	Red    = "#e05d44"
	Blue   = "#007ec6"
	Grey   = "#9f9f9f"
	Label  = "#555"
)

// Segment is one box of a badge.
type Segment struct {
	Text  string
	Color string
}

// Badge is a label and the segments that follow it.
type Badge struct {
	Label    string
	Segments []Segment
}

// horizontal padding on each side of a segment's text, in pixels.
const pad = 5

// maxText bounds one segment's text so a hostile name cannot make a huge SVG.
const maxText = 120

// SVG renders b as a 20-pixel-high flat badge.
func (b Badge) SVG() []byte {
	segs := append([]Segment{{Text: b.Label, Color: Label}}, b.Segments...)
	type box struct {
		text        string
		color       string
		x, w, textW int
	}
	boxes := make([]box, 0, len(segs))
	x := 0
	var words []string
	for _, s := range segs {
		t := clip(s.Text)
		tw := Width(t)
		w := tw + 2*pad
		boxes = append(boxes, box{text: t, color: safeColor(s.Color), x: x, w: w, textW: tw})
		x += w
		words = append(words, t)
	}
	total := x
	title := escape(strings.Join(words, ": "))

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s">`, total, title)
	fmt.Fprintf(&sb, `<title>%s</title>`, title)
	sb.WriteString(`<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`)
	fmt.Fprintf(&sb, `<clipPath id="r"><rect width="%d" height="20" rx="3" fill="#fff"/></clipPath>`, total)
	sb.WriteString(`<g clip-path="url(#r)">`)
	for _, bx := range boxes {
		fmt.Fprintf(&sb, `<rect x="%d" width="%d" height="20" fill="%s"/>`, bx.x, bx.w, bx.color)
	}
	fmt.Fprintf(&sb, `<rect width="%d" height="20" fill="url(#s)"/></g>`, total)
	sb.WriteString(`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110">`)
	for _, bx := range boxes {
		// Coordinates are scaled by 10 (font-size 110, scale .1) as shields
		// does, for sub-pixel placement.
		cx := bx.x*10 + bx.w*5
		t := escape(bx.text)
		fmt.Fprintf(&sb, `<text aria-hidden="true" x="%d" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="%d">%s</text>`, cx, bx.textW*10, t)
		fmt.Fprintf(&sb, `<text x="%d" y="140" transform="scale(.1)" fill="#fff" textLength="%d">%s</text>`, cx, bx.textW*10, t)
	}
	sb.WriteString(`</g></svg>`)
	return []byte(sb.String())
}

func clip(s string) string {
	r := []rune(s)
	if len(r) > maxText {
		return string(r[:maxText-1]) + "…"
	}
	return s
}

// safeColor keeps only "#" and hex digits, so a colour can never break out
// of its attribute.
func safeColor(c string) string {
	if len(c) < 2 || len(c) > 9 || c[0] != '#' {
		return Grey
	}
	for _, r := range c[1:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return Grey
		}
	}
	return c
}

func escape(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			sb.WriteString("&amp;")
		case '<':
			sb.WriteString("&lt;")
		case '>':
			sb.WriteString("&gt;")
		case '"':
			sb.WriteString("&quot;")
		case '\'':
			sb.WriteString("&apos;")
		default:
			if r < 0x20 || r == 0x7f || r == 0xfffd {
				// Control characters are not allowed in XML 1.0.
				sb.WriteRune(' ')
				continue
			}
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// Width is the width in whole pixels of s set in Verdana 11px.
func Width(s string) int {
	var w float64
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			w += verdana11[r-0x20]
		} else {
			w += 7.5 // wide enough for most other letters
		}
	}
	return int(math.Ceil(w))
}

// verdana11 holds the advance widths of printable ASCII (0x20..0x7e) in
// Verdana at 11px, as shields.io measures them.
var verdana11 = [95]float64{
	3.87, 4.33, 5.05, 9.0, 7.0, 11.84, 7.99, 2.95, 4.99, 4.99, 7.0, 9.0, 4.0, 4.99, 4.0, 4.99, // space ! " # $ % & ' ( ) * + , - . /
	7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, // 0-9
	4.99, 4.99, 9.0, 9.0, 9.0, 6.0, 11.0, // : ; < = > ? @
	7.52, 7.54, 7.68, 8.48, 6.96, 6.32, 8.53, 8.27, 4.62, 5.0, 7.62, 6.12, 9.27, 8.23, 8.66, 6.63, 8.66, 7.65, 7.52, 6.78, 8.05, 7.52, 10.88, 7.54, 6.77, 7.53, // A-Z
	4.99, 4.99, 4.99, 9.0, 7.0, 7.0, // [ \ ] ^ _ `
	6.61, 6.85, 5.73, 6.85, 6.55, 3.87, 6.85, 6.96, 3.02, 3.79, 6.51, 3.02, 10.7, 6.96, 6.68, 6.85, 6.85, 4.69, 5.73, 4.33, 6.96, 6.51, 9.0, 6.51, 6.51, 5.78, // a-z
	6.98, 4.99, 6.98, 9.0, // { | } ~
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// rawConfig is what the TOML decoder fills: Config with the backend tables
// kept as primitives.
type rawConfig struct {
	Server   Server                    `toml:"server"`
	Limits   Limits                    `toml:"limits"`
	Backends map[string]toml.Primitive `toml:"backends"`
	Tenants  []Tenant                  `toml:"tenants"`
	Clients  []Client                  `toml:"clients"`
	Storage  map[string]*Storage       `toml:"storage"`
	Playback Playback                  `toml:"playback"`
	Registry Registry                  `toml:"registry"`
}

// source is a parsed document shared by a Config and its Backends: the
// metadata (for Backend.Decode) and key positions (for messages).
type source struct {
	file string
	mu   sync.Mutex // serialises MetaData use: PrimitiveDecode mutates it
	md   toml.MetaData
	pos  *positions
}

// decode parses data into a Config with defaults applied. Syntax and type
// errors are returned as err; unknown keys as problems.
func decode(data []byte, filename string) (*Config, []*Problem, error) {
	d := Default()
	raw := rawConfig{Server: d.Server, Limits: d.Limits, Storage: d.Storage, Playback: d.Playback}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		return nil, nil, decodeError(filename, data, err)
	}
	// The stream quotas default to a share of max_streams (see Validate).
	for _, k := range []struct {
		name string
		v    *int
	}{{"max_streams_per_client", &raw.Limits.MaxStreamsPerClient}, {"max_streams_per_tenant", &raw.Limits.MaxStreamsPerTenant}} {
		if !md.IsDefined("limits", k.name) {
			*k.v = 0
		}
	}
	src := &source{file: filename, md: md, pos: scanPositions(string(data))}
	c := &Config{
		Server:   raw.Server,
		Limits:   raw.Limits,
		Backends: make(map[string]*Backend, len(raw.Backends)),
		Tenants:  raw.Tenants,
		Clients:  raw.Clients,
		Storage:  raw.Storage,
		Playback: raw.Playback,
		Registry: raw.Registry,
		File:     filename,
		src:      src,
	}
	var probs []*Problem
	for _, name := range sortedKeys(raw.Backends) {
		b := &Backend{Name: name, prim: raw.Backends[name], src: src}
		var t struct {
			Type string `toml:"type"`
		}
		if err := md.PrimitiveDecode(b.prim, &t); err != nil {
			probs = append(probs, src.problem("backends."+quoteKey(name)+".type", decodeMessage(err)))
		}
		b.Type = t.Type
		c.Backends[name] = b
	}
	probs = append(probs, src.undecoded(func(k toml.Key) bool {
		// Backend options are checked by Backend.Decode.
		return len(k) > 2 && k[0] == "backends"
	})...)
	return c, probs, nil
}

// decodeError turns a toml error into a Problem keeping its position.
func decodeError(filename string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		p := &Problem{File: filename, Line: pe.Position.Line, Col: pe.Position.Col, Err: tomlError{pe}}
		if pe.LastKey != "" {
			p.Field = scanPositions(string(data)).indexedAt(pe.Position.Line, pe.LastKey)
		}
		return p
	}
	if line, key, msg, ok := splitTypeError(err); ok {
		return &Problem{File: filename, Line: line, Field: scanPositions(string(data)).indexedAt(line, key), Err: msg}
	}
	return &Problem{File: filename, Err: err}
}

// typeErrorRE matches the library's type errors, which are not ParseErrors:
// toml: line 5 (last key "server.socket"): incompatible types: ...
var typeErrorRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

// splitTypeError extracts line, key and message from a library type error.
func splitTypeError(err error) (line int, key string, msg error, ok bool) {
	m := typeErrorRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, "", nil, false
	}
	line, _ = strconv.Atoi(m[1])
	if k, uerr := strconv.Unquote(`"` + m[2] + `"`); uerr == nil {
		key = k
	} else {
		key = m[2]
	}
	return line, key, typeError{msg: m[3], err: err}, true
}

// typeError is a library type error without its position prefix.
type typeError struct {
	msg string
	err error
}

func (e typeError) Error() string { return e.msg }
func (e typeError) Unwrap() error { return e.err }

// tomlError shows a ParseError's message without its own position prefix.
type tomlError struct{ pe toml.ParseError }

func (e tomlError) Error() string { return e.pe.Message }
func (e tomlError) Unwrap() error { return e.pe }

// decodeMessage extracts the message of an error from PrimitiveDecode.
func decodeMessage(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return tomlError{pe}
	}
	if _, _, msg, ok := splitTypeError(err); ok {
		return msg
	}
	return err
}

// undecoded reports every key the decoder did not use, except those skip
// accepts. A key under an unknown table is not reported separately.
func (s *source) undecoded(skip func(toml.Key) bool) []*Problem {
	und := s.md.Undecoded()
	set := make(map[string]bool, len(und))
	for _, k := range und {
		set[keyID(k)] = true
	}
	var probs []*Problem
	seen := map[string]bool{}
	for _, k := range und {
		id := keyID(k)
		if seen[id] || skip(k) {
			continue
		}
		seen[id] = true
		parentUnknown := false
		for i := 1; i < len(k); i++ {
			if set[keyID(k[:i])] && !skip(k[:i]) {
				parentUnknown = true
				break
			}
		}
		if parentUnknown {
			continue
		}
		occ := s.pos.byPlain[id]
		if len(occ) == 0 {
			// Not found by the scanner (inline table): use the nearest ancestor.
			line := 0
			for i := len(k) - 1; i > 0 && line == 0; i-- {
				if o := s.pos.byPlain[keyID(k[:i])]; len(o) > 0 {
					line = o[0].line
				}
			}
			probs = append(probs, &Problem{File: s.file, Line: line, Err: fmt.Errorf("unknown key %s", k.String())})
			continue
		}
		for _, o := range occ {
			probs = append(probs, &Problem{File: s.file, Line: o.line, Err: fmt.Errorf("unknown key %s", o.indexed)})
		}
	}
	return probs
}

// problem makes a Problem about field, with its line if known.
func (s *source) problem(field string, err error) *Problem {
	p := &Problem{Field: field, Err: err}
	if s != nil {
		p.File = s.file
		p.Line = s.pos.line(field)
	}
	return p
}

// Backend is one [backends.NAME] table. Its options are decoded by the
// backend itself through Decode.
type Backend struct {
	// Name is the NAME in [backends.NAME].
	Name string
	// Type is the backend type: file, pkcs11, transit, awskms or any
	// registered type (checked when the backend is opened).
	Type string

	prim toml.Primitive
	src  *source
}

// NewBackend builds a Backend in code (for example for -dev mode) from an
// options table, as if it had been written in a configuration file.
func NewBackend(name, typ string, options map[string]any) (*Backend, error) {
	tbl := make(map[string]any, len(options)+1)
	for k, v := range options {
		tbl[k] = v
	}
	tbl["type"] = typ
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"backends": map[string]any{name: tbl}}); err != nil {
		return nil, fmt.Errorf("config: backend %q: %w", name, err)
	}
	c, probs, err := decode(buf.Bytes(), "")
	if err != nil {
		return nil, fmt.Errorf("config: backend %q: %w", name, err)
	}
	if len(probs) > 0 {
		return nil, joinProblems(probs)
	}
	b := c.Backends[name]
	b.src.file = "backend " + name
	return b, nil
}

// Decode decodes the backend's options (its table without "type") into v, a
// pointer to a struct with toml field tags. An option v does not have is an
// error naming backends.NAME.KEY and its line; so is a value of the wrong
// type. Decode is the decode function passed to backends.Open.
func (b *Backend) Decode(v any) error {
	if b.src == nil {
		return &Problem{Field: "backends." + quoteKey(b.Name), Err: errors.New("backend has no options table (build it with config.NewBackend)")}
	}
	s := b.src
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.md.PrimitiveDecode(b.prim, v); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) && pe.LastKey != "" {
			return &Problem{File: s.file, Line: pe.Position.Line, Field: s.pos.indexedAt(pe.Position.Line, pe.LastKey), Err: tomlError{pe}}
		}
		if line, key, msg, ok := splitTypeError(err); ok && key != "" {
			return &Problem{File: s.file, Line: line, Field: s.pos.indexedAt(line, key), Err: msg}
		}
		return &Problem{File: s.file, Field: "backends." + quoteKey(b.Name), Err: decodeMessage(err)}
	}
	probs := s.undecoded(func(k toml.Key) bool {
		return !(len(k) > 2 && k[0] == "backends" && k[1] == b.Name)
	})
	if len(probs) > 0 {
		return joinProblems(probs)
	}
	return nil
}

// positions records where keys and table headers are in a document.
type positions struct {
	byPlain   map[string][]keyPos // keyID (no indexes) -> occurrences
	byIndexed map[string]int      // indexed name -> line
	byLine    map[int][]keyPos    // line -> keys defined there
}

// indexedAt returns the indexed name of the key written key.String() style
// (as the library names keys, without array indexes) at line, or key itself.
func (p *positions) indexedAt(line int, key string) string {
	for _, kp := range p.byLine[line] {
		if unindex(kp.indexed) == key {
			return kp.indexed
		}
	}
	return key
}

// unindex removes "[N]" array indexes from an indexed name.
func unindex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '[' {
			if j := strings.IndexByte(s[i:], ']'); j > 0 {
				i += j
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type keyPos struct {
	indexed string // e.g. tenants[0].keys[1].id
	line    int
}

// line returns the line of an indexed field name, or of its nearest
// ancestor that has one, or 0.
func (p *positions) line(field string) int {
	if p == nil {
		return 0
	}
	for f := field; f != ""; {
		if l, ok := p.byIndexed[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// scanPositions finds the line of every key and table header in a TOML
// document that the decoder has already accepted. It follows headers,
// dotted keys and arrays of tables (to produce indexed names); it skips
// multi-line strings and the continuation lines of multi-line arrays.
func scanPositions(doc string) *positions {
	p := &positions{byPlain: map[string][]keyPos{}, byIndexed: map[string]int{}, byLine: map[int][]keyPos{}}
	add := func(plain []string, indexed string, line int) {
		id := keyID(plain)
		p.byPlain[id] = append(p.byPlain[id], keyPos{indexed, line})
		p.byLine[line] = append(p.byLine[line], keyPos{indexed, line})
		if _, ok := p.byIndexed[indexed]; !ok {
			p.byIndexed[indexed] = line
		}
	}
	arrays := map[string]bool{} // keyID of array-of-tables paths
	count := map[string]int{}   // indexed array path -> elements so far
	var curPlain []string
	curIndexed := ""
	// index builds the indexed name of a header path.
	index := func(segs []string, arrayHeader bool) string {
		var b strings.Builder
		for i, s := range segs {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(quoteKey(s))
			last := i == len(segs)-1
			if arrays[keyID(segs[:i+1])] && !(last && arrayHeader) {
				fmt.Fprintf(&b, "[%d]", count[b.String()]-1)
			}
		}
		if arrayHeader {
			base := b.String()
			n := count[base]
			count[base] = n + 1
			arrays[keyID(segs)] = true
			fmt.Fprintf(&b, "[%d]", n)
		}
		return b.String()
	}
	inString := "" // closing delimiter of an open multi-line string
	depth := 0     // open brackets of a multi-line value
	for n, line := range strings.Split(doc, "\n") {
		lineNo := n + 1
		rest := strings.TrimSpace(line)
		if inString != "" {
			if i := strings.Index(rest, inString); i >= 0 {
				rest = rest[i+3:]
				inString = ""
				depth += bracketDelta(rest)
			}
			continue
		}
		if depth > 0 {
			var delim string
			depth, delim = scanValue(rest, depth)
			inString = delim
			continue
		}
		if rest == "" || rest[0] == '#' {
			continue
		}
		if strings.HasPrefix(rest, "[[") {
			segs, _, ok := parseKey(rest[2:])
			if !ok {
				continue
			}
			curPlain = segs
			curIndexed = index(segs, true)
			add(segs, curIndexed, lineNo)
			continue
		}
		if rest[0] == '[' {
			segs, _, ok := parseKey(rest[1:])
			if !ok {
				continue
			}
			curPlain = segs
			curIndexed = index(segs, false)
			add(segs, curIndexed, lineNo)
			continue
		}
		segs, after, ok := parseKey(rest)
		if !ok || !strings.HasPrefix(after, "=") {
			continue
		}
		plain := append(append([]string(nil), curPlain...), segs...)
		indexed := curIndexed
		for _, s := range segs {
			if indexed != "" {
				indexed += "."
			}
			indexed += quoteKey(s)
		}
		add(plain, indexed, lineNo)
		var delim string
		depth, delim = scanValue(strings.TrimSpace(after[1:]), 0)
		inString = delim
	}
	return p
}

// scanValue walks a value (or the rest of one) and returns the bracket depth
// left open and the delimiter of a multi-line string left open.
func scanValue(s string, depth int) (int, string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '#':
			return depth, ""
		case '[', '{':
			depth++
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case '"', '\'':
			q := string([]byte{c, c, c})
			if strings.HasPrefix(s[i:], q) {
				j := strings.Index(s[i+3:], q)
				if j < 0 {
					return depth, q
				}
				i += 3 + j + 2
				continue
			}
			for j := i + 1; j < len(s); j++ {
				if c == '"' && s[j] == '\\' {
					j++
					continue
				}
				if s[j] == c {
					i = j
					break
				}
			}
		}
	}
	return depth, ""
}

func bracketDelta(s string) int {
	d, _ := scanValue(s, 0)
	return d
}

// parseKey parses a (dotted, possibly quoted) key at the start of s and
// returns its segments and what follows, trimmed. It stops at '=', ']' or
// the end.
func parseKey(s string) (segs []string, rest string, ok bool) {
	s = strings.TrimLeft(s, " \t")
	for {
		if s == "" {
			return nil, "", false
		}
		var seg string
		switch s[0] {
		case '"':
			end := -1
			var b strings.Builder
			for j := 1; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					b.WriteByte(s[j+1]) // good enough for names
					j++
					continue
				}
				if s[j] == '"' {
					end = j
					break
				}
				b.WriteByte(s[j])
			}
			if end < 0 {
				return nil, "", false
			}
			seg, s = b.String(), s[end+1:]
		case '\'':
			j := strings.IndexByte(s[1:], '\'')
			if j < 0 {
				return nil, "", false
			}
			seg, s = s[1:1+j], s[2+j:]
		default:
			j := 0
			for j < len(s) && isBare(s[j]) {
				j++
			}
			if j == 0 {
				return nil, "", false
			}
			seg, s = s[:j], s[j:]
		}
		segs = append(segs, seg)
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, ".") {
			s = strings.TrimLeft(s[1:], " \t")
			continue
		}
		return segs, s, true
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoteKey quotes a key segment the way TOML would need it.
func quoteKey(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if !isBare(s[i]) {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

func keyID(k []string) string { return strings.Join(k, "\x00") }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

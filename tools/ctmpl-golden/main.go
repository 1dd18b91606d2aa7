// Command ctmpl-golden writes the expected outputs of the consul-template corpus
// (tests/ctmpl/corpus) using Go's own text/template, with helper functions that
// behave as consul-template's do (hashicorp/consul-template template/funcs.go).
// Standard library only; see README.md.
package main

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"strconv"
	"strings"
	"text/template"
	"time"

	"kv2render.local/ctmpl-golden/dependency"
)

// fixedNow is the clock every corpus case renders with (Python tests use the same).
var fixedNow = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

type caseConfig struct {
	LeftDelim  string            `json:"left_delim"`
	RightDelim string            `json:"right_delim"`
	Env        map[string]string `json:"env"`
}

func main() {
	root := "tests/ctmpl/corpus"
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	dirs, err := os.ReadDir(root)
	if err != nil {
		fail(err)
	}
	count := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if err := runCase(filepath.Join(root, d.Name()), d.Name()); err != nil {
			fail(fmt.Errorf("%s: %w", d.Name(), err))
		}
		count++
	}
	fmt.Printf("wrote expected outputs for %d cases\n", count)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ctmpl-golden:", err)
	os.Exit(1)
}

func runCase(dir, name string) error {
	text, err := os.ReadFile(filepath.Join(dir, "template.ctmpl"))
	if err != nil {
		return err
	}
	secrets, err := loadSecrets(filepath.Join(dir, "secrets.json"))
	if err != nil {
		return err
	}
	var cfg caseConfig
	if raw, err := os.ReadFile(filepath.Join(dir, "case.json")); err == nil {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return err
		}
	}
	for _, mode := range []string{"zero", "error"} {
		out, execErr := render(name, string(text), cfg, secrets, mode)
		for _, ext := range []string{"txt", "err"} {
			_ = os.Remove(filepath.Join(dir, "expected."+mode+"."+ext))
		}
		if execErr != nil {
			path := filepath.Join(dir, "expected."+mode+".err")
			if err := os.WriteFile(path, []byte(execErr.Error()+"\n"), 0o644); err != nil {
				return err
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "expected."+mode+".txt"), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// loadSecrets reads {"mount/data/path[?version=N]": {"data": ..., "metadata": ...}}
// decoding numbers as json.Number, as the Vault API client does (api.ParseSecret).
func loadSecrets(path string) (map[string]*dependency.Secret, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var fixtures map[string]map[string]interface{}
	if err := dec.Decode(&fixtures); err != nil {
		return nil, err
	}
	out := make(map[string]*dependency.Secret)
	for key, body := range fixtures {
		out[key] = &dependency.Secret{Data: body}
	}
	return out, nil
}

// shimKVv2 turns a legacy "mount/path" into "mount/data/path", as consul-template
// does after detecting a KV v2 mount (dependency/vault_read.go shimKVv2Path).
// The corpus uses one-segment mount names.
func shimKVv2(path string) string {
	query := ""
	if i := strings.Index(path, "?"); i >= 0 {
		path, query = path[:i], path[i:]
	}
	parts := strings.SplitN(strings.Trim(path, "/"), "/", 2)
	if len(parts) == 2 && !strings.HasPrefix(parts[1], "data/") {
		path = parts[0] + "/data/" + parts[1]
	}
	return path + query
}

func render(name, text string, cfg caseConfig, secrets map[string]*dependency.Secret, mode string) ([]byte, error) {
	funcs := helperFuncs(cfg.Env, secrets)
	tmpl := template.New(name).Delims(cfg.LeftDelim, cfg.RightDelim).Funcs(funcs)
	tmpl = tmpl.Option("missingkey=" + mode)
	tmpl, err := tmpl.Parse(text)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	// consul-template executes with a nil dot (template/template.go Execute).
	if err := tmpl.Execute(&b, nil); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func helperFuncs(env map[string]string, secrets map[string]*dependency.Secret) template.FuncMap {
	return template.FuncMap{
		"secret": func(s ...string) (interface{}, error) {
			if len(s) == 0 {
				return nil, nil
			}
			if len(s) > 1 {
				return nil, errors.New("writes are not part of the corpus")
			}
			sec, ok := secrets[shimKVv2(s[0])]
			if !ok {
				return nil, fmt.Errorf("fixture has no secret %q", shimKVv2(s[0]))
			}
			return sec, nil
		},
		"env": func(s string) (string, error) { return env[s], nil },
		"mustEnv": func(s string) (string, error) {
			if env[s] == "" {
				return "", fmt.Errorf("required environment variable %s is empty", s)
			}
			return env[s], nil
		},
		"envOrDefault": func(s, def string) (string, error) {
			if v, ok := env[s]; ok {
				return v, nil
			}
			return def, nil
		},
		"timestamp": func(s ...string) (string, error) {
			switch len(s) {
			case 0:
				return fixedNow.Format(time.RFC3339), nil
			case 1:
				if s[0] == "unix" {
					return strconv.FormatInt(fixedNow.Unix(), 10), nil
				}
				return fixedNow.Format(s[0]), nil
			default:
				return "", fmt.Errorf("timestamp: wrong number of arguments, expected 0 or 1"+
					", but got %d", len(s))
			}
		},
		"toJSON": func(i interface{}) (string, error) {
			result, err := json.Marshal(i)
			if err != nil {
				return "", fmt.Errorf("toJSON: %w", err)
			}
			return string(bytes.TrimSpace(result)), err
		},
		"toJSONPretty": func(m interface{}) (string, error) {
			result, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				return "", fmt.Errorf("toJSONPretty: %w", err)
			}
			return string(bytes.TrimSpace(result)), err
		},
		"toUnescapedJSON":       unescapedJSON(""),
		"toUnescapedJSONPretty": unescapedJSON("  "),
		"base64Decode": func(s string) (string, error) {
			v, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", fmt.Errorf("base64Decode: %w", err)
			}
			return string(v), nil
		},
		"base64Encode": func(s string) (string, error) {
			return base64.StdEncoding.EncodeToString([]byte(s)), nil
		},
		"base64URLDecode": func(s string) (string, error) {
			v, err := base64.URLEncoding.DecodeString(s)
			if err != nil {
				return "", fmt.Errorf("base64URLDecode: %w", err)
			}
			return string(v), nil
		},
		"base64URLEncode": func(s string) (string, error) {
			return base64.URLEncoding.EncodeToString([]byte(s)), nil
		},
		"trimSpace":  func(s string) (string, error) { return strings.TrimSpace(s), nil },
		"trim":       func(c, s string) (string, error) { return strings.Trim(s, c), nil },
		"trimPrefix": func(p, s string) (string, error) { return strings.TrimPrefix(s, p), nil },
		"trimSuffix": func(p, s string) (string, error) { return strings.TrimSuffix(s, p), nil },
		"toLower":    func(s string) (string, error) { return strings.ToLower(s), nil },
		"toUpper":    func(s string) (string, error) { return strings.ToUpper(s), nil },
		"indent":     indent,
		"split": func(sep, s string) ([]string, error) {
			s = strings.TrimSpace(s)
			if s == "" {
				return []string{}, nil
			}
			return strings.Split(s, sep), nil
		},
		"join":       func(sep string, a []string) (string, error) { return strings.Join(a, sep), nil },
		"replaceAll": func(f, t, s string) (string, error) { return strings.Replace(s, f, t, -1), nil },
		"contains":   func(v, l interface{}) (bool, error) { return in(l, v) },
		"in":         in,
		"sha256Hex": func(s string) (string, error) {
			h := sha256.Sum256([]byte(s))
			return hex.EncodeToString(h[:]), nil
		},
		"md5sum": func(s string) (string, error) { return fmt.Sprintf("%x", md5.Sum([]byte(s))), nil },
		"parseInt": func(s string) (int64, error) {
			if s == "" {
				return 0, nil
			}
			r, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parseInt: %w", err)
			}
			return r, nil
		},
		"parseBool": func(s string) (bool, error) {
			if s == "" {
				return false, nil
			}
			r, err := strconv.ParseBool(s)
			if err != nil {
				return false, fmt.Errorf("parseBool: %w", err)
			}
			return r, nil
		},
	}
}

func unescapedJSON(ind string) func(interface{}) (string, error) {
	return func(i interface{}) (string, error) {
		buf := &bytes.Buffer{}
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		if ind != "" {
			enc.SetIndent("", ind)
		}
		if err := enc.Encode(i); err != nil {
			return "", err
		}
		return strings.TrimRight(buf.String(), "\r\n"), nil
	}
}

// indent is consul-template's indent.
func indent(spaces int, s string) (string, error) {
	if spaces < 0 {
		return "", fmt.Errorf("indent value must be a positive integer")
	}
	var output []byte
	prefix := []byte(strings.Repeat(" ", spaces))
	sp := true
	for _, c := range []byte(s) {
		if sp && c != '\n' {
			output = append(output, prefix...)
		}
		output = append(output, c)
		sp = c == '\n'
	}
	return string(output), nil
}

// in is consul-template's in(l, v).
func in(l, v interface{}) (bool, error) {
	lv := reflect.ValueOf(l)
	vv := reflect.ValueOf(v)
	switch lv.Kind() {
	case reflect.Array, reflect.Slice:
		var items []interface{}
		if reflect.TypeOf(l).Elem().Kind() == reflect.Interface {
			items = l.([]interface{})
		}
		for i := 0; i < lv.Len(); i++ {
			var lvv reflect.Value
			if items != nil {
				lvv = reflect.ValueOf(items[i])
			} else {
				lvv = lv.Index(i)
			}
			switch lvv.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				switch vv.Kind() {
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					if vv.Int() == lvv.Int() {
						return true, nil
					}
				}
			case reflect.Float32, reflect.Float64:
				switch vv.Kind() {
				case reflect.Float32, reflect.Float64:
					if vv.Float() == lvv.Float() {
						return true, nil
					}
				}
			case reflect.String:
				if vv.Type() == lvv.Type() && vv.String() == lvv.String() {
					return true, nil
				}
			}
		}
	case reflect.String:
		if vv.Type() == lv.Type() && strings.Contains(lv.String(), vv.String()) {
			return true, nil
		}
	}
	return false, nil
}

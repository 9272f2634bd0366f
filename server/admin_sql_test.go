package server

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestAdminQueriesInAdminFiles: every sqlc query that only admin routes
// use is declared in queries/admin_*.sql. The test reads the package's
// source: the admin code is what the handlers passed to guardAdmin reach
// (calls and references by name, transitively); the shared code is what
// the package's entry points reach without passing through guardAdmin
// (other routes, jobs, start-up). A query the admin code calls (s.q.Name)
// and the shared code never reaches must be in an admin file. Matching by
// name over-approximates what the shared code reaches, so the test does
// not flag a query another route uses; it may miss one.
func TestAdminQueriesInAdminFiles(t *testing.T) {
	fset := gotoken.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		refs    map[string]bool // names of functions, methods and package variables it refers to
		queries map[string]bool // s.q.<Query> calls
	}
	funcs := map[string]*fn{} // by name: functions, methods and package variables
	vars := map[string]bool{} // the package variables among them
	adminRoot := &fn{refs: map[string]bool{}, queries: map[string]bool{}}
	// collect records what n refers to into into, and everything inside a
	// guardAdmin call's arguments into adminRoot instead.
	imports := map[string]bool{} // the names the package's files import packages as
	var collect func(n ast.Node, into *fn)
	collect = func(n ast.Node, into *fn) {
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "guardAdmin" && into != adminRoot {
					collect(sel.X, into)
					for _, a := range x.Args {
						collect(a, adminRoot)
					}
					return false
				}
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
					if inner, ok := sel.X.(*ast.SelectorExpr); ok && inner.Sel.Name == "q" {
						into.queries[sel.Sel.Name] = true
					}
				}
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && imports[id.Name] {
					return false // another package's name
				}
				into.refs[x.Sel.Name] = true
			case *ast.Ident:
				into.refs[x.Name] = true
			}
			return true
		})
	}
	var parsed []*ast.File
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, af)
		for _, im := range af.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			name := path.Base(p)
			if im.Name != nil {
				name = im.Name.Name
			} else if strings.HasPrefix(name, "v") && strings.Contains(p, "/") {
				if _, err := strconv.Atoi(name[1:]); err == nil { // .../v5
					name = path.Base(path.Dir(p))
				}
			}
			imports[name] = true
		}
	}
	for _, af := range parsed {
		for _, d := range af.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				name := d.Name.Name // methods are matched by name, whatever their receiver
				if funcs[name] == nil {
					funcs[name] = &fn{refs: map[string]bool{}, queries: map[string]bool{}}
				}
				collect(d.Body, funcs[name])
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if vs, ok := sp.(*ast.ValueSpec); ok {
						for _, id := range vs.Names {
							vars[id.Name] = true
							if funcs[id.Name] == nil {
								funcs[id.Name] = &fn{refs: map[string]bool{}, queries: map[string]bool{}}
							}
							for _, v := range vs.Values {
								collect(v, funcs[id.Name])
							}
						}
					}
				}
			}
		}
	}
	reach := func(roots []*fn) map[string]bool {
		queries, seen := map[string]bool{}, map[string]bool{}
		var visit func(f *fn)
		visit = func(f *fn) {
			for q := range f.queries {
				queries[q] = true
			}
			for r := range f.refs {
				if g := funcs[r]; g != nil && !seen[r] {
					seen[r] = true
					visit(g)
				}
			}
		}
		for _, f := range roots {
			visit(f)
		}
		return queries
	}
	// The admin code: what guardAdmin's handlers reach. The shared code:
	// what the package's entry points reach (its exported functions and
	// methods, such as New and the job workers' Work, init, and its
	// variables) other than through guardAdmin.
	adminQueries := reach([]*fn{adminRoot})
	var shared []*fn
	for name, f := range funcs {
		if ast.IsExported(name) || name == "init" || vars[name] {
			shared = append(shared, f)
		}
	}
	sharedQueries := reach(shared)
	if len(adminQueries) < 20 || len(sharedQueries) < 20 {
		t.Fatalf("found %d admin and %d shared queries; the source scan is broken", len(adminQueries), len(sharedQueries))
	}

	// Where each query is declared.
	declared := map[string]string{}
	sqlFiles, err := filepath.Glob("../queries/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	nameRe := regexp.MustCompile(`(?m)^-- name: (\w+) `)
	for _, f := range sqlFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range nameRe.FindAllStringSubmatch(string(b), -1) {
			declared[m[1]] = filepath.Base(f)
		}
	}
	var wrong []string
	for q := range adminQueries {
		file, ok := declared[q]
		if !ok {
			t.Errorf("query %s, called by admin code, is declared in no queries/*.sql file", q)
			continue
		}
		if !sharedQueries[q] && !strings.HasPrefix(file, "admin_") {
			wrong = append(wrong, q+" ("+file+")")
		}
	}
	sort.Strings(wrong)
	if testing.Verbose() {
		var only []string
		for q := range adminQueries {
			if !sharedQueries[q] {
				only = append(only, q)
			}
		}
		sort.Strings(only)
		t.Logf("queries only admin code uses: %s", strings.Join(only, " "))
	}
	if len(wrong) > 0 {
		t.Errorf("queries only admin routes use, outside queries/admin_*.sql: %s", strings.Join(wrong, ", "))
	}
}

package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/code4me/code4me/internal/db"
	"github.com/code4me/code4me/models"
)

// The admin API: the dashboard's view of every table an operator needs,
// under /api/admin/<resource>, every route behind guardAdmin, errors
// {"detail": text}. Each resource is a row of adminResources
// (admin_api_resources.go): its sqlc list query, its filters and sort
// keys, and the writes it supports; one generic handler shape serves them
// all, so a resource is a table row, not hand-written handlers.
//
// A list (GET /api/admin/<resource>) takes the resource's filters, sort
// (a key of its fixed list, "-" first for descending), limit (1 to 200,
// default 50) and cursor, and answers {"items": [...], "next_cursor":
// string or null}. The cursor is opaque to clients: it encodes the sort, the
// last row's sort value and its id, and the next page is the rows after
// that pair in the sort's order (keyset pagination), so rows inserted or
// deleted between pages never shift a page. A malformed cursor, one made
// for another sort, an unknown sort key, filter or query parameter, or a
// filter value of the wrong type is a 400.
//
// GET /api/admin/<resource>/{id} is the list query narrowed to one id.
// Writes (PATCH, DELETE, POST /{id}/<action>) run in one transaction that
// reads the row, changes it, reads it again and appends an admin_audit row
// with both states, so the log has a row exactly when the change
// committed. Rows never carry a password, token or key hash: the queries
// do not select them.

// Messages of the admin API.
const (
	MsgAdminAPIError = "Server failed to answer the admin request."
	msgBadCursor     = "Invalid cursor"
)

// Pagination bounds of the admin lists.
const (
	adminDefaultLimit = 50
	adminMaxLimit     = 200
)

// sortKind is the type of a sort key's values, which picks the query
// parameter its cursor fills (after_time, after_text or after_int).
type sortKind int

const (
	sortTime sortKind = iota
	sortText
	sortInt
)

// adminSort is a sort key of a resource: Value reads it from a row for
// the next page's cursor.
type adminSort[T any] struct {
	Key   string
	Kind  sortKind
	Value func(T) any
}

// adminFilter is a query parameter that narrows a list. Type is its
// OpenAPI type: "string", "boolean", "uuid", "integer" or "date-time".
type adminFilter struct {
	Name, Type, Doc string
}

// adminArgs is a parsed list request, handed to the resource's query.
type adminArgs struct {
	Sort      string
	Limit     int32
	AfterID   *string
	AfterTime *time.Time
	AfterText *string
	AfterInt  *int64
	filters   map[string]any
}

// Filter values by name; nil when the filter was not given.
func (a adminArgs) str(name string) *string         { v, _ := a.filters[name].(*string); return v }
func (a adminArgs) boolean(name string) *bool       { v, _ := a.filters[name].(*bool); return v }
func (a adminArgs) uuid(name string) *uuid.UUID     { v, _ := a.filters[name].(*uuid.UUID); return v }
func (a adminArgs) integer(name string) *int64      { v, _ := a.filters[name].(*int64); return v }
func (a adminArgs) datetime(name string) *time.Time { v, _ := a.filters[name].(*time.Time); return v }

// adminWrite is a write on one row of a resource. Lock, when set, locks
// the row in the transaction first; Apply changes it (answering errors
// the client should see as failDetail or validation errors) and may
// return done, run after the commit (for work outside Postgres).
type adminWrite[T any] struct {
	// Method is PATCH, DELETE or POST; Action names the write in the
	// audit log, and for POST the path: /{id}/<Action>.
	Method, Action string
	Summary, Doc   string
	Body, Query    []apiField
	Errors         map[int]string
	Lock           func(ctx context.Context, s *Server, tx pgx.Tx, a adminArgs) error
	Apply          func(c *fiber.Ctx, s *Server, tx pgx.Tx, before T) (done func(context.Context), err error)
}

// adminResource is one resource of the admin API.
type adminResource[T any] struct {
	// Name is the path segment and the audit log's resource; Title names
	// one row in messages ("User").
	Name, Title string
	// IDType is the OpenAPI type of the path's id; ParseID turns an id
	// into the filters that select its row (false: no row has that id).
	IDType  string
	ParseID func(string) (map[string]any, bool)
	ID      func(T) string
	Filters []adminFilter
	Sorts   []adminSort[T]
	// DefaultSort applies when the request has no sort.
	DefaultSort string
	List        func(ctx context.Context, s *Server, q models.DBTX, a adminArgs) ([]T, error)
	// Audit is what the audit log keeps of a row; nil: the row.
	Audit  func(T) any
	Writes []adminWrite[T]
	// Doc describes the resource; Item its row's fields.
	Doc, Item string
}

// adminRoutable is an adminResource of any row type.
type adminRoutable interface {
	register(s *Server, g fiber.Router)
	ops() []apiOp
}

// adminAPIRoutes registers every resource under /api/admin, the overview
// and the audit log.
func (s *Server) adminAPIRoutes(api fiber.Router) {
	g := api.Group("/admin")
	g.Get("/overview", s.guardAdmin(s.adminOverview)...)
	for _, r := range adminResources {
		r.register(s, g)
	}
}

func (r *adminResource[T]) register(s *Server, g fiber.Router) {
	g.Get("/"+r.Name, s.guardAdmin(r.list(s))...)
	g.Get("/"+r.Name+"/:id", s.guardAdmin(r.get(s))...)
	for i := range r.Writes {
		w := &r.Writes[i]
		path := "/" + r.Name + "/:id"
		if w.Method == fiber.MethodPost {
			path += "/" + w.Action
		}
		g.Add(w.Method, path, s.guardAdmin(r.write(s, w))...)
	}
}

func (r *adminResource[T]) notFound() error {
	return failDetail(fiber.StatusNotFound, r.Title+" not found")
}

// list answers GET /api/admin/<resource>.
func (r *adminResource[T]) list(s *Server) fiber.Handler {
	return func(c *fiber.Ctx) error {
		a, limit, err := r.args(c)
		if err != nil {
			return err
		}
		rows, err := r.List(c.UserContext(), s, s.db, a)
		if err != nil {
			return internalDetail(MsgAdminAPIError, fmt.Errorf("admin %s list: %w", r.Name, err))
		}
		var next *string
		if len(rows) > limit {
			rows = rows[:limit]
			cur := r.cursor(a.Sort, rows[limit-1])
			next = &cur
		}
		return c.JSON(fiber.Map{"items": rows, "next_cursor": next})
	}
}

// get answers GET /api/admin/<resource>/{id}.
func (r *adminResource[T]) get(s *Server) fiber.Handler {
	return func(c *fiber.Ctx) error {
		filters, ok := r.ParseID(c.Params("id"))
		if !ok {
			return r.notFound()
		}
		row, err := r.one(c.UserContext(), s, s.db, filters)
		if errors.Is(err, db.ErrNotFound) {
			return r.notFound()
		}
		if err != nil {
			return internalDetail(MsgAdminAPIError, fmt.Errorf("admin %s get: %w", r.Name, err))
		}
		return c.JSON(row)
	}
}

// one reads the row the filters select; db.ErrNotFound when none.
func (r *adminResource[T]) one(ctx context.Context, s *Server, q models.DBTX, filters map[string]any) (T, error) {
	var zero T
	rows, err := r.List(ctx, s, q, adminArgs{Sort: r.DefaultSort, Limit: 1, filters: filters})
	if err != nil {
		return zero, err
	}
	if len(rows) == 0 {
		return zero, db.ErrNotFound
	}
	return rows[0], nil
}

// write answers one of the resource's writes: in one transaction, the row
// is locked and read, changed, read again, and the audit row appended.
// The answer is the row after the change, or 204 when it is gone.
func (r *adminResource[T]) write(s *Server, w *adminWrite[T]) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ctx := c.UserContext()
		filters, ok := r.ParseID(c.Params("id"))
		if !ok {
			return r.notFound()
		}
		a := adminArgs{filters: filters}
		var after *T
		var done func(context.Context)
		err := db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
			after, done = nil, nil
			if w.Lock != nil {
				if err := w.Lock(ctx, s, tx, a); err != nil {
					return err
				}
			}
			before, err := r.one(ctx, s, tx, filters)
			if err != nil {
				return err
			}
			if done, err = w.Apply(c, s, tx, before); err != nil {
				return err
			}
			row, err := r.one(ctx, s, tx, filters)
			switch {
			case err == nil:
				after = &row
			case !errors.Is(err, db.ErrNotFound):
				return err
			}
			var auditAfter any
			if after != nil {
				auditAfter = r.auditView(*after)
			}
			return s.audit(ctx, tx, c, w.Action, r.Name, r.ID(before), r.auditView(before), auditAfter)
		})
		if err != nil {
			return r.writeError(err)
		}
		if done != nil {
			done(ctx)
		}
		if after == nil {
			return c.SendStatus(fiber.StatusNoContent)
		}
		return c.JSON(after)
	}
}

// writeError passes the answers a write chose (failDetail, validation
// errors) through and maps the rest.
func (r *adminResource[T]) writeError(err error) error {
	var ae *apiError
	var ve *validationError
	switch {
	case errors.As(err, &ae), errors.As(err, &ve):
		return err
	case errors.Is(db.Translate(err), db.ErrNotFound):
		return r.notFound()
	}
	return internalDetail(MsgAdminAPIError, fmt.Errorf("admin %s write: %w", r.Name, err))
}

func (r *adminResource[T]) auditView(row T) any {
	if r.Audit != nil {
		return r.Audit(row)
	}
	return row
}

// audit appends an admin_audit row on q, which must be the transaction of
// the change it records. before and after are marshalled as JSON (nil:
// NULL); the caller passes values without secrets.
func (s *Server) audit(ctx context.Context, q models.DBTX, c *fiber.Ctx, action, resource, id string, before, after any) error {
	arg := models.AdminAuditInsertParams{Action: action, Resource: resource, ResourceID: id}
	if p := principal(c); p != nil {
		actor := p.UserID
		arg.ActorID = &actor
	}
	var err error
	if arg.Before, err = auditJSON(before); err != nil {
		return err
	}
	if arg.After, err = auditJSON(after); err != nil {
		return err
	}
	if err := s.q.AdminAuditInsert(ctx, q, arg); err != nil {
		return fmt.Errorf("audit %s %s: %w", action, resource, err)
	}
	return nil
}

// auditedTx runs fn in a transaction for the admin write action on
// resource and, when fn succeeds, appends the audit row of the change it
// made (its id, the state before and after) in the same transaction.
// fn's error is returned as it is, so callers map it as before.
func (s *Server) auditedTx(c *fiber.Ctx, action, resource string,
	fn func(tx pgx.Tx) (id string, before, after any, err error)) error {
	ctx := c.UserContext()
	return db.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		id, before, after, err := fn(tx)
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, c, action, resource, id, before, after)
	})
}

func auditJSON(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return b, nil
}

// adminCursor is a cursor's content: the sort it was made for, the last
// row's sort value and id.
type adminCursor struct {
	Sort  string          `json:"s"`
	Value json.RawMessage `json:"v"`
	ID    string          `json:"id"`
}

func (r *adminResource[T]) sortKey(sort string) (adminSort[T], bool) {
	key := strings.TrimPrefix(sort, "-")
	for _, k := range r.Sorts {
		if k.Key == key {
			return k, true
		}
	}
	return adminSort[T]{}, false
}

// cursor is the next page's cursor after row.
func (r *adminResource[T]) cursor(sort string, row T) string {
	k, _ := r.sortKey(sort)
	v, _ := json.Marshal(k.Value(row))
	b, _ := json.Marshal(adminCursor{Sort: sort, Value: v, ID: r.ID(row)})
	return base64.RawURLEncoding.EncodeToString(b)
}

// args parses a list request's query: limit, sort, cursor and filters. It
// returns the page size; adminArgs.Limit asks for one row more, which
// tells whether there is a next page.
func (r *adminResource[T]) args(c *fiber.Ctx) (adminArgs, int, error) {
	bad := func(format string, v ...any) (adminArgs, int, error) {
		return adminArgs{}, 0, failDetail(fiber.StatusBadRequest, fmt.Sprintf(format, v...))
	}
	a := adminArgs{Sort: r.DefaultSort, filters: map[string]any{}}
	limit := adminDefaultLimit
	var perr error
	c.Context().QueryArgs().VisitAll(func(kb, vb []byte) {
		if perr != nil {
			return
		}
		k, v := string(kb), string(vb)
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > adminMaxLimit {
				perr = fmt.Errorf("limit must be an integer from 1 to %d", adminMaxLimit)
			}
			limit = n
		case "sort":
			a.Sort = v
		case "cursor":
		default:
			f, ok := r.filter(k)
			if !ok {
				perr = fmt.Errorf("unknown query parameter %q; filters of %s: %s", k, r.Name, r.filterNames())
				return
			}
			val, err := parseFilter(f.Type, v)
			if err != nil {
				perr = fmt.Errorf("filter %s: %v", k, err)
				return
			}
			a.filters[k] = val
		}
	})
	if perr != nil {
		return bad("%s", perr.Error())
	}
	k, ok := r.sortKey(a.Sort)
	if !ok {
		return bad("Invalid sort %q; sort keys of %s: %s (\"-\" first for descending)", a.Sort, r.Name, r.sortNames())
	}
	if raw := c.Query("cursor"); raw != "" {
		var cur adminCursor
		b, err := base64.RawURLEncoding.DecodeString(raw)
		if err == nil {
			err = json.Unmarshal(b, &cur)
		}
		if err != nil || cur.ID == "" || cur.Sort != a.Sort || !a.setAfter(k.Kind, cur.Value) {
			return bad(msgBadCursor)
		}
		a.AfterID = &cur.ID
	}
	a.Limit = int32(limit + 1)
	return a, limit, nil
}

// setAfter sets the cursor's sort value by its kind; false when it is not
// a value of that kind.
func (a *adminArgs) setAfter(kind sortKind, raw json.RawMessage) bool {
	switch kind {
	case sortTime:
		var t time.Time
		if json.Unmarshal(raw, &t) != nil {
			return false
		}
		a.AfterTime = &t
	case sortText:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return false
		}
		a.AfterText = &s
	case sortInt:
		var n int64
		if json.Unmarshal(raw, &n) != nil {
			return false
		}
		a.AfterInt = &n
	}
	return true
}

func (r *adminResource[T]) filter(name string) (adminFilter, bool) {
	for _, f := range r.Filters {
		if f.Name == name {
			return f, true
		}
	}
	return adminFilter{}, false
}

func (r *adminResource[T]) filterNames() string {
	names := make([]string, len(r.Filters))
	for i, f := range r.Filters {
		names[i] = f.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (r *adminResource[T]) sortNames() string {
	names := make([]string, len(r.Sorts))
	for i, k := range r.Sorts {
		names[i] = k.Key
	}
	return strings.Join(names, ", ")
}

// parseFilter reads a filter's value by its type.
func parseFilter(typ, v string) (any, error) {
	switch typ {
	case "boolean":
		switch v {
		case "true":
			b := true
			return &b, nil
		case "false":
			b := false
			return &b, nil
		}
		return nil, errors.New("want true or false")
	case "uuid":
		id, err := uuid.Parse(v)
		if err != nil {
			return nil, errors.New("want a UUID")
		}
		return &id, nil
	case "integer":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return &n, nil
	case "date-time":
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, errors.New("want an RFC 3339 date-time")
		}
		return &t, nil
	}
	return &v, nil
}

// uuidID and intID are ParseID for resources whose id is a uuid or an
// integer: the "id" filter.
func uuidID(raw string) (map[string]any, bool) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return nil, false
	}
	return map[string]any{"id": &id}, true
}

func intID(raw string) (map[string]any, bool) {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return nil, false
	}
	return map[string]any{"id": &n}, true
}

// ops documents the resource's routes in /openapi.json.
func (r *adminResource[T]) ops() []apiOp {
	base := "/api/admin/" + r.Name
	idParam := []apiField{reqField("id", r.IDType, "")}
	query := []apiField{
		optField("limit", "integer", fmt.Sprintf("1 to %d, default %d", adminMaxLimit, adminDefaultLimit)),
		optField("sort", "string", "one of "+r.sortNames()+", \"-\" first for descending; default "+r.DefaultSort),
		optField("cursor", "string", "next_cursor of the previous page"),
	}
	for _, f := range r.Filters {
		query = append(query, optField(f.Name, f.Type, f.Doc))
	}
	doc := adminDoc + " " + r.Doc
	listErrors := adminErrors(map[int]string{400: "An unknown sort key, filter or query parameter, a filter value of the wrong type, " +
		"a limit out of range, or a malformed cursor (or one made for another sort)"})
	ops := []apiOp{
		{Method: "GET", Path: base, Summary: "Admin: list " + r.Name, Auth: ClassA, Account: true, OK: 200,
			Doc: doc + " " + adminListDoc, Query: query,
			Resp: []apiField{respField("items", "[]object", r.Item),
				respField("next_cursor", "string", "the next page's cursor; null on the last page")},
			Errors: listErrors},
		{Method: "GET", Path: base + "/{id}", Summary: "Admin: one of " + r.Name, Auth: ClassA, Account: true, OK: 200,
			Doc: doc, Params: idParam, Resp: rowFields[T](),
			Errors: adminErrors(map[int]string{404: r.Title + " not found"})},
	}
	for _, w := range r.Writes {
		p := base + "/{id}"
		if w.Method == fiber.MethodPost {
			p += "/" + w.Action
		}
		ok, resp := 200, rowFields[T]()
		if w.Method == fiber.MethodDelete {
			ok, resp = 204, nil
		}
		errs := map[int]string{404: r.Title + " not found"}
		for k, v := range w.Errors {
			errs[k] = v
		}
		ops = append(ops, apiOp{Method: w.Method, Path: p, Summary: "Admin: " + w.Summary, Auth: ClassA, Account: true, OK: ok,
			Doc: doc + " " + w.Doc + " " + adminWriteDoc, Params: idParam, Body: w.Body, Query: w.Query, Resp: resp,
			Errors: adminErrors(errs)})
	}
	return ops
}

// rowFields documents the JSON fields of the row type T: the sqlc row's
// json tags and Go types. A JSON column is an "object" (its value may be
// any JSON); a pointer field may be null.
func rowFields[T any]() []apiField {
	var out []apiField
	rt := reflect.TypeFor[T]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		doc := ""
		if f.Type.Kind() == reflect.Pointer || f.Type.Kind() == reflect.Interface {
			doc = "or null"
		}
		out = append(out, respField(name, jsonType(f.Type), doc))
	}
	return out
}

// jsonType is the apiField type of a Go type as encoding/json writes it.
func jsonType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Time]():
		return "date-time"
	case reflect.TypeFor[uuid.UUID]():
		return "uuid"
	case reflect.TypeFor[json.RawMessage]():
		return "object"
	case reflect.TypeFor[netip.Addr]():
		return "string"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.Slice:
		return "[]" + jsonType(t.Elem())
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return "string"
}

const (
	adminListDoc = "Answers {items, next_cursor}: keyset pagination, the cursor encoding the sort, the last row's sort value " +
		"and its id (docs/api.md, Admin API)."
	adminWriteDoc = "The change and its admin_audit row (GET /api/admin/audit) commit in one transaction."
)

// adminAPIOps documents the admin API in /openapi.json.
var adminAPIOps = func() []apiOp {
	ops := []apiOp{adminOverviewOp}
	for _, r := range adminResources {
		ops = append(ops, r.ops()...)
	}
	return ops
}()

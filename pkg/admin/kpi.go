package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// KPISource reads the business KPIs the dashboard charts. Each method
// returns the n most recent minutes present in the data, oldest first (event
// times may be anywhere, so "the last 30 minutes of the wall clock" could be
// empty). ctx bounds the call. Implementations are safe for concurrent use.
type KPISource interface {
	OrdersPerMinute(ctx context.Context, n int) ([]OrdersMinute, error)
	PaymentSuccessRate(ctx context.Context, n int) ([]PaymentsMinute, error)
}

// OrdersMinute is one row of the orders_per_minute view.
type OrdersMinute struct {
	Minute    time.Time `json:"minute"`
	Orders    uint64    `json:"orders"`
	Cancelled uint64    `json:"cancelled"`
	// RevenueBase is the exact decimal revenue of the orders not
	// cancelled, in the base currency, written as a JSON number.
	RevenueBase json.Number `json:"revenue_base"`
}

// PaymentsMinute is one row of the payment_success_rate view.
type PaymentsMinute struct {
	Minute      time.Time `json:"minute"`
	Attempts    uint64    `json:"attempts"`
	Successes   uint64    `json:"successes"`
	Refunds     uint64    `json:"refunds"`
	SuccessRate float64   `json:"success_rate"` // successes / attempts, 0..1
}

// ClickHouseKPI reads the KPI views that `sluice migrate` creates
// (schemas/clickhouse/004_kpi.sql) in one database.
type ClickHouseKPI struct {
	conn driver.Conn
	db   string
}

// NewClickHouseKPI reads the views of database db over conn.
func NewClickHouseKPI(conn driver.Conn, db string) *ClickHouseKPI {
	return &ClickHouseKPI{conn: conn, db: db}
}

// ErrNoKPIViews says the KPI views do not exist: a deployment that did not
// run `sluice migrate`, or one with its own tables.
var ErrNoKPIViews = errors.New("KPI views not found (created by `sluice migrate`)")

// ClickHouse error codes for a missing table or database.
const (
	chUnknownTable    = 60
	chUnknownDatabase = 81
)

// OrdersPerMinute reads orders_per_minute.
func (k *ClickHouseKPI) OrdersPerMinute(ctx context.Context, n int) ([]OrdersMinute, error) {
	// Casts keep custom deployments with other integer widths working;
	// revenue goes through toString so it stays an exact decimal.
	q := fmt.Sprintf("SELECT minute, toUInt64(orders), toUInt64(cancelled), toString(revenue_base) FROM %s.orders_per_minute ORDER BY minute DESC LIMIT %d", quoteIdent(k.db), n)
	rows, err := k.conn.Query(ctx, q)
	if err != nil {
		return nil, k.wrap("orders_per_minute", err)
	}
	defer rows.Close()
	var out []OrdersMinute
	for rows.Next() {
		var r OrdersMinute
		var rev string
		if err := rows.Scan(&r.Minute, &r.Orders, &r.Cancelled, &rev); err != nil {
			return nil, k.wrap("orders_per_minute", err)
		}
		r.RevenueBase = json.Number(rev)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, k.wrap("orders_per_minute", err)
	}
	slices.Reverse(out)
	return out, nil
}

// PaymentSuccessRate reads payment_success_rate.
func (k *ClickHouseKPI) PaymentSuccessRate(ctx context.Context, n int) ([]PaymentsMinute, error) {
	q := fmt.Sprintf("SELECT minute, toUInt64(attempts), toUInt64(successes), toUInt64(refunds), toFloat64(success_rate) FROM %s.payment_success_rate ORDER BY minute DESC LIMIT %d", quoteIdent(k.db), n)
	rows, err := k.conn.Query(ctx, q)
	if err != nil {
		return nil, k.wrap("payment_success_rate", err)
	}
	defer rows.Close()
	var out []PaymentsMinute
	for rows.Next() {
		var r PaymentsMinute
		if err := rows.Scan(&r.Minute, &r.Attempts, &r.Successes, &r.Refunds, &r.SuccessRate); err != nil {
			return nil, k.wrap("payment_success_rate", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, k.wrap("payment_success_rate", err)
	}
	slices.Reverse(out)
	return out, nil
}

func (k *ClickHouseKPI) wrap(view string, err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && (ex.Code == chUnknownTable || ex.Code == chUnknownDatabase) {
		return fmt.Errorf("admin: kpi %s.%s: %w", k.db, view, ErrNoKPIViews)
	}
	return fmt.Errorf("admin: kpi %s.%s: %w", k.db, view, err)
}

func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "`", "\\`") + "`"
}

// KPI is the KPI part of /api/stats. Error is set (and the series may be
// empty or partial) when a view is missing or ClickHouse did not answer in
// time. Each series holds the minutes present in its window, oldest first;
// the window is null when the series has no rows.
type KPI struct {
	OrdersPerMinute    []OrdersMinute   `json:"orders_per_minute"`
	OrdersWindow       *Window          `json:"orders_window"`
	PaymentSuccessRate []PaymentsMinute `json:"payment_success_rate"`
	PaymentsWindow     *Window          `json:"payments_window"`
	Error              string           `json:"error,omitempty"`
	// FetchedAt is when the values were read (they are cached).
	FetchedAt time.Time `json:"fetched_at"`
}

// Window is the stretch of event time a series is charted over: the
// KPIMinutes minutes that end with the newest minute present, one slot
// per minute on a time axis. A minute of the window without a row is a
// gap (no events at that time, or none loaded yet) and is drawn as one;
// rows older than the window are left out rather than drawn next to newer
// ones, since event times may lie days apart.
type Window struct {
	From    time.Time `json:"from"`    // the window's first minute (UTC)
	To      time.Time `json:"to"`      // its last: the newest minute present
	Minutes int       `json:"minutes"` // slots from From to To, both included
	// Present counts the minutes of the window that have a row.
	Present int `json:"present"`
	// Earlier is the newest minute present before From: data left of
	// the chart. Null when the rows read hold none (KPISource is asked
	// for one row more than the window can hold, so one older row, if
	// any exists, is among them).
	Earlier *time.Time `json:"earlier"`
}

// window keeps the rows (oldest first, one per distinct minute, as
// KPISource returns them) that fall in the n-minute window ending with
// the newest row's minute, with every minute in UTC, and describes the
// window; nil when there are no rows.
func window[T any](rows []T, minute func(*T) *time.Time, n int) ([]T, *Window) {
	if len(rows) == 0 {
		return rows, nil
	}
	for i := range rows {
		m := minute(&rows[i])
		*m = m.UTC()
	}
	to := *minute(&rows[len(rows)-1])
	w := &Window{From: to.Add(-time.Duration(n-1) * time.Minute), To: to, Minutes: n}
	first := len(rows)
	for first > 0 && !minute(&rows[first-1]).Before(w.From) {
		first--
	}
	if first > 0 {
		w.Earlier = ptr(*minute(&rows[first-1]))
	}
	w.Present = len(rows) - first
	return rows[first:], w
}

// kpiCache reads the KPIs at most once per ttl, however many dashboards
// poll: requests within the ttl share the last answer, errors included,
// and requests arriving during a read wait for it instead of starting
// their own.
type kpiCache struct {
	src     KPISource
	minutes int
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time

	mu   sync.Mutex // held during a read, so one read runs at a time
	last KPI
	at   time.Time
}

func (c *kpiCache) get(ctx context.Context) KPI {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.ttl {
		return c.last
	}
	// The answer is shared: a client that goes away must not cancel (and
	// cache an error for) everyone else.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	var k KPI
	var errs []string
	var err error
	// One row more than the window holds: the newest minute before it.
	if k.OrdersPerMinute, err = c.src.OrdersPerMinute(rctx, c.minutes+1); err != nil {
		errs = append(errs, err.Error())
	}
	if k.PaymentSuccessRate, err = c.src.PaymentSuccessRate(rctx, c.minutes+1); err != nil {
		errs = append(errs, err.Error())
	}
	k.OrdersPerMinute, k.OrdersWindow = window(k.OrdersPerMinute, func(r *OrdersMinute) *time.Time { return &r.Minute }, c.minutes)
	k.PaymentSuccessRate, k.PaymentsWindow = window(k.PaymentSuccessRate, func(r *PaymentsMinute) *time.Time { return &r.Minute }, c.minutes)
	if k.OrdersPerMinute == nil {
		k.OrdersPerMinute = []OrdersMinute{}
	}
	if k.PaymentSuccessRate == nil {
		k.PaymentSuccessRate = []PaymentsMinute{}
	}
	k.Error = strings.Join(errs, "; ")
	k.FetchedAt = c.now()
	c.last, c.at = k, k.FetchedAt
	return k
}

package engine

import (
	"context"
	"io"
	"sync"
)

// Stream is the output of one request. The scheduler appends text to it
// without ever blocking: deltas not yet read are coalesced, and a size-one
// notify channel wakes the reader. A Stream is safe for concurrent use; a
// slow or absent reader never slows other requests.
type Stream struct {
	seq *sequence

	mu      sync.Mutex
	pending []byte
	ended   bool
	res     *Result

	notify chan struct{} // capacity 1
	done   chan struct{} // closed with the result
}

func newStream() *Stream {
	return &Stream{notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// push appends text; called by the scheduler goroutine.
func (st *Stream) push(text string) {
	st.mu.Lock()
	st.pending = append(st.pending, text...)
	st.mu.Unlock()
	st.wake()
}

// end stores the result after appending the last text; called once by the
// scheduler goroutine after it has released the request's slot.
func (st *Stream) end(tail string, res *Result) {
	st.mu.Lock()
	st.pending = append(st.pending, tail...)
	st.res, st.ended = res, true
	st.mu.Unlock()
	close(st.done)
	st.wake()
}

func (st *Stream) wake() {
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

// Next blocks until text is available and returns all text produced since
// the previous call: valid UTF-8 that never contains a stop string or its
// beginning. After the last text it returns io.EOF; Result then holds the
// outcome. It returns ctx's error if ctx ends first (the request goes on;
// use Cancel to stop it).
func (st *Stream) Next(ctx context.Context) (string, error) {
	for {
		st.mu.Lock()
		if len(st.pending) > 0 {
			t := string(st.pending)
			st.pending = st.pending[:0]
			st.mu.Unlock()
			return t, nil
		}
		ended := st.ended
		st.mu.Unlock()
		if ended {
			return "", io.EOF
		}
		select {
		case <-st.notify:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Done is closed when the request has ended and its slot is released.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Wait blocks until the request ends and returns its result. Text not read
// through Next is part of Result.Text as well. It returns the result's error
// only for StopError.
func (st *Stream) Wait() (*Result, error) {
	<-st.done
	st.mu.Lock()
	res := st.res
	st.mu.Unlock()
	if res.Stop == StopError {
		return res, res.Err
	}
	return res, nil
}

// Result returns the outcome once Done is closed, nil before.
func (st *Stream) Result() *Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.res
}

// Cancel stops the request; its slot is freed within one batch step and the
// result's reason is StopCancelled.
func (st *Stream) Cancel() { st.seq.cancel(context.Canceled) }

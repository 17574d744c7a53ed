package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

// setupLogging sends controller-runtime's, client-go's and our own logs
// through one slog handler: one structured line per event.
func setupLogging(w io.Writer, level, format string) (logr.Logger, error) {
	var lvl slog.Level
	switch level {
	case "debug":
		lvl = slog.LevelDebug
	case "info", "":
		lvl = slog.LevelInfo
	case "error":
		lvl = slog.LevelError
	default:
		return logr.Logger{}, fmt.Errorf("--log-level %q: want debug, info or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return logr.Logger{}, fmt.Errorf("--log-format %q: want text or json", format)
	}
	log := logr.FromSlogHandler(h)
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	slog.SetDefault(slog.New(h))
	return log, nil
}

// logrSlog hands the same sink to packages that log through slog.
func logrSlog(log logr.Logger) *slog.Logger {
	return slog.New(logr.ToSlogHandler(log))
}

package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	sigsyaml "sigs.k8s.io/yaml"
)

// generateKustomization gives the plain folder dir a kustomization listing
// its manifests, laid over the checkout in memory (never written to disk):
//
//   - every *.yaml and *.yml file below dir, in lexical order;
//   - hidden files and directories (".git", ".github", ...) are skipped;
//   - a subdirectory with its own kustomization is listed as a resource
//     folder and not descended into;
//   - symlinked directories are not followed (symlinked files are, and must
//     stay inside the root);
//   - a YAML file with a document that is not a Kubernetes object (no
//     apiVersion or kind) is an error naming the file, rather than being
//     skipped: a manifest that lost its kind by mistake must not silently
//     disappear from the render, since the sync would then prune its object.
//     Empty documents are ignored;
//   - a folder with no manifest at all is an error, for the same reason.
func generateKustomization(fsys *rootFS, dir string) error {
	var resources []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if kustomizationFile(fsys, p) != "" {
				resources = append(resources, filepath.ToSlash(rel))
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 && fsys.IsDir(p) {
			return nil
		}
		data, err := fsys.ReadFile(p)
		if err != nil {
			return &Error{Path: fsys.rel(p), Err: err}
		}
		manifest, err := isManifest(data)
		if err != nil {
			return &Error{Path: fsys.rel(p), Err: err}
		}
		if manifest {
			resources = append(resources, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return err
		}
		return &Error{Path: fsys.rel(dir), Err: err}
	}
	if len(resources) == 0 {
		return &Error{Path: fsys.rel(dir), Err: errors.New("no kustomization and no Kubernetes manifests (*.yaml, *.yml) in this folder")}
	}
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: resources,
	}
	data, err := sigsyaml.Marshal(k)
	if err != nil {
		return err
	}
	return fsys.addVirtual(filepath.Join(dir, konfig.DefaultKustomizationFileName()), data)
}

// isManifest reports whether data holds at least one Kubernetes object, and
// fails when one of its documents is not one (or is not YAML), naming the
// document and, for YAML errors, the line.
func isManifest(data []byte) (bool, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	found := false
	for i := 1; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return found, nil
		}
		if err != nil {
			return false, err
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue // an empty document, e.g. after a trailing "---"
		}
		top := doc.Content[0]
		if top.Kind != yaml.MappingNode {
			return false, fmt.Errorf("line %d: document %d is not a Kubernetes object (not a mapping)", top.Line, i)
		}
		var meta struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
		}
		if err := top.Decode(&meta); err != nil {
			return false, err
		}
		if meta.APIVersion == "" || meta.Kind == "" {
			return false, fmt.Errorf("line %d: document %d is not a Kubernetes object (no apiVersion or kind); move the file out of the folder or add a kustomization.yaml", top.Line, i)
		}
		found = true
	}
}

package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
//   - every file goes through decodeManifests, as a resource named in a
//     kustomization does: a document that is not a Kubernetes object (no
//     apiVersion, kind or metadata.name) is an error naming the file,
//     rather than being skipped, because a manifest that lost its kind by
//     mistake must not silently disappear from the render (the sync would
//     prune its object). Empty documents are ignored; files, and the
//     objects in them, are held to the Options limits;
//   - a folder with no manifest at all is an error, for the same reason.
func generateKustomization(fsys *rootFS, dir string) error {
	var resources []string
	objects := 0
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
		var rerr *Error
		if errors.As(err, &rerr) {
			return rerr
		}
		if err != nil {
			return &Error{Path: fsys.rel(p), Err: err}
		}
		objs, err := decodeManifests(data, fsys.lim.objects-objects)
		switch {
		case errors.Is(err, errNotObject):
			err = fmt.Errorf("%w; move the file out of the folder or add a kustomization.yaml", err)
		case errors.Is(err, errTooManyObjects):
			err = tooManyObjects(fsys.lim.objects)
		}
		if err != nil {
			return &Error{Path: fsys.rel(p), Err: err}
		}
		objects += len(objs)
		// kustomize reads the file again, from rootFS's cache: it need not
		// be decoded twice.
		fsys.counts[p], fsys.parsed[p] = len(objs), true
		if len(objs) > 0 {
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

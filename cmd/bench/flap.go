package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// measureFlap writes the status subresource of one synced Deployment
// `perSecond` times a second for d, as the Deployment's controller does all
// day, and returns how many requests the agent made meanwhile and how many
// status writes were made. Nothing but status changes, so the agent has
// nothing to do.
func measureFlap(ctx context.Context, k *kube, s synced, d time.Duration, perSecond int) (agentReqs int64, writes int, err error) {
	key := types.NamespacedName{Namespace: s.nsPrefix + "-0", Name: "app-0000"}
	dep := &appsv1.Deployment{}
	if err := k.c.Get(ctx, key, dep); err != nil {
		return 0, 0, fmt.Errorf("Deployment %s: %w", key, err)
	}
	// Whatever the agent still does about earlier parts is not counted.
	time.Sleep(3 * time.Second)
	agentReqs, err = k.countAgent(ctx, func() error {
		// Each write goes out on its tick in a goroutine of its own, so that
		// a slow answer on a loaded machine doesn't lower the rate.
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		end := time.Now().Add(d)
		for now := range tick.C {
			if now.After(end) {
				break
			}
			writes++
			patch, _ := json.Marshal(map[string]any{"status": map[string]any{
				"observedGeneration": dep.Generation,
				"replicas":           writes % 2,
				"updatedReplicas":    writes % 2,
				"conditions": []map[string]any{{
					"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
					"message":            fmt.Sprintf("status write %d from the benchmark", writes),
					"lastUpdateTime":     now.UTC().Format(time.RFC3339),
					"lastTransitionTime": now.UTC().Format(time.RFC3339),
				}},
			}})
			wg.Add(1)
			go func() {
				defer wg.Done()
				obj := &appsv1.Deployment{}
				obj.Namespace, obj.Name = key.Namespace, key.Name
				if err := k.c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch), client.FieldOwner("bench-deployment-controller")); err != nil {
					select {
					case errs <- fmt.Errorf("status of Deployment %s: %w", key, err):
					default:
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errs:
			return err
		default:
		}
		// Anything the agent does about the last writes counts too.
		time.Sleep(2 * time.Second)
		return nil
	})
	return agentReqs, writes, err
}
